"""Hot reload: invalid files never replace a good version; errors are reported; swaps are whole."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.boost.reload import BoostRegistry, lifespan
from rewriter.serve.app import create_app

GOOD = "name: shop\nalpha: 1.0\n"
BETTER = "name: shop\nalpha: 2.0\n"
BROKEN = "name: shop\nalpah: 3.0\n"


def _write(path: Path, text: str) -> None:
    """Atomic replace, as the docs ask (a temporary file renamed over the old one)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _registry(directory: Path) -> tuple[BoostRegistry, list[dict[str, BoostProfile]]]:
    seen: list[dict[str, BoostProfile]] = []
    registry = BoostRegistry(directory, lambda raw: f"p-{raw}", lambda p, _e: seen.append(p))
    registry.reload()
    return registry, seen


def test_invalid_edit_keeps_serving_the_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    _write(path, GOOD)
    registry, seen = _registry(tmp_path)
    good = registry.profiles["shop"]
    _write(path, BROKEN)
    assert registry.reload()
    assert registry.profiles["shop"] is good
    [error] = registry.errors
    assert error.startswith(f"{path}:2:1: unknown key 'alpah'")
    assert f"(still serving version {good.version})" in error
    _write(path, BETTER)
    registry.reload()
    assert registry.profiles["shop"].alpha == 2.0 and registry.errors == []
    assert [p["shop"].alpha for p in seen] == [1.0, 1.0, 2.0]
    assert len({id(p) for p in seen}) == 3  # a new dict each time: swapped, never mutated


def test_unchanged_files_are_not_reread(tmp_path: Path) -> None:
    _write(tmp_path / "shop.yaml", GOOD)
    registry, seen = _registry(tmp_path)
    assert registry.reload() is False and len(seen) == 1


def test_new_invalid_files_are_not_served_and_deleted_files_go(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", GOOD)
    _write(tmp_path / "b.yaml", "name: other\nwindow: 0\n")
    registry, _ = _registry(tmp_path)
    assert set(registry.profiles) == {"shop"}
    assert registry.errors[0].endswith("(not served)")
    (tmp_path / "a.yaml").unlink()
    (tmp_path / "b.yaml").unlink()
    registry.reload()
    assert registry.profiles == {} and registry.errors == []


def test_a_second_file_with_a_used_name_is_not_served(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", GOOD)
    _write(tmp_path / "b.yaml", BETTER)
    registry, _ = _registry(tmp_path)
    assert registry.profiles["shop"].alpha == 1.0
    assert "is already used by" in registry.errors[0]


def test_user_lists_are_bound_on_load(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "name: s\nsegments:\n  v: {when: {users: [bob]}}\n")
    registry, _ = _registry(tmp_path)
    assert "p-bob" in repr(registry.profiles["s"].segments)
    assert "'bob'" not in repr(registry.profiles["s"].segments)


def test_a_file_still_being_written_is_read_once_it_settles(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    _write(path, GOOD)
    registry, _ = _registry(tmp_path)
    path.write_text("")  # an in-place write, caught between truncate and write
    assert registry.reload(settle=60.0) is False  # too fresh to read: no error, still GOOD
    assert registry.profiles["shop"].alpha == 1.0 and registry.errors == []
    path.write_text(BETTER)
    past = time.time() - 120
    os.utime(path, (past, past))  # now left alone for longer than the settle time
    assert registry.reload(settle=60.0)
    assert registry.profiles["shop"].alpha == 2.0 and registry.errors == []


def test_the_watcher_thread_reloads_on_request(tmp_path: Path) -> None:
    _write(tmp_path / "shop.yaml", GOOD)
    registry, _ = _registry(tmp_path)
    registry.interval = 60.0  # only request_reload (what SIGHUP does) can wake it in time
    registry.start()
    try:
        _write(tmp_path / "shop.yaml", BETTER)
        registry.request_reload()
        deadline = time.monotonic() + 5
        while registry.profiles["shop"].alpha != 2.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert registry.profiles["shop"].alpha == 2.0
    finally:
        registry.stop()


def test_proxy_health_reports_profile_errors_and_swaps(tmp_path: Path) -> None:
    _write(tmp_path / "default.yaml", "name: default\n")
    _write(tmp_path / "shop.yaml", GOOD)
    settings = config.Settings(url="http://127.0.0.1:9", secret="s" * 32, timeout=1.0)
    app = create_app(settings, boost_dir=str(tmp_path))
    _write(tmp_path / "shop.yaml", BROKEN)
    app.state.boost_registry.reload()

    async def health() -> dict[str, object]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return (await client.get("/_affinity/health")).json()

    body = asyncio.run(health())
    assert (
        body["boost_profiles"]["shop"]["version"] == app.state.proxy.boost_profiles["shop"].version
    )
    [error] = body["boost_profile_errors"]  # type: ignore[misc]
    assert "unknown key 'alpah'" in error and "still serving version" in error


def test_sighup_reloads_while_the_app_runs(tmp_path: Path) -> None:
    _write(tmp_path / "shop.yaml", GOOD)
    registry, _ = _registry(tmp_path)
    registry.interval = 60.0  # polling cannot be what reloads it

    async def run() -> float:
        async with lifespan(registry)(None):
            _write(tmp_path / "shop.yaml", BETTER)
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(250):
                if registry.profiles["shop"].alpha == 2.0:
                    break
                await asyncio.sleep(0.02)
            return registry.profiles["shop"].alpha

    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a missing handler fails, not kills
    try:
        assert asyncio.run(run()) == 2.0
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert registry._thread is None  # the watcher stops with the app
