"""Hot reload of boost profiles for the proxy: pick up edited files without a restart, never
serve an invalid one.

`BoostRegistry` keeps the last good version of every profiles/*.yaml. `reload()` re-reads
the files whose (mtime, size, inode) changed; a file that fails validation keeps its last
good version in service (or is not served, if it never was valid), and its errors are
logged and listed by `errors` (the proxy's /_affinity/health shows them under
`boost_profile_errors`). A new dict of profiles is built first and then handed over in one
assignment, so a request in flight keeps the dict it started with and no request sees a
half-loaded state.

Triggers: a polling thread (every `interval` seconds) and SIGHUP (when the server runs in
the main thread), both started and stopped with the app's lifespan (`lifespan()`).
The watcher reads a changed file only once it has been left alone for `settle` seconds
(its mtime is that old): an editor or `cat > file` truncates first and writes after, and a
read in between would report (or, if it parsed, serve) a half-written file. Atomic
replaces (write a temporary file, then rename it over the old one) are safe either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from rewriter.boost.profile import BoostProfile, BoostProfileError, bind_secret, load_boost_profile

log = logging.getLogger("affinity.boost_profiles")

Signature = tuple[int, int, int]  # mtime_ns, size, inode
OnChange = Callable[[dict[str, BoostProfile], list[str]], None]


class BoostRegistry:
    """The served boost profiles of one directory, reloaded when files change."""

    def __init__(
        self,
        directory: str | Path,
        pseudonymize: Callable[[str], str],
        on_change: OnChange,
        interval: float = 1.0,
        settle: float = 0.3,
    ) -> None:
        self.directory = Path(directory)
        self.pseudonymize = pseudonymize
        self.on_change = on_change
        self.interval = interval
        self.settle = settle
        self._deferred = False  # a changed file was too fresh to read; poll again soon
        self.reloads = 0  # successful reloads that changed what is served (for tests)
        self._seen: dict[Path, Signature] = {}
        self._good: dict[Path, BoostProfile] = {}
        self._errors: dict[Path, BoostProfileError] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.profiles: dict[str, BoostProfile] = {}
        self.errors: list[str] = []

    # --- loading ------------------------------------------------------------------------------

    def reload(self, force: bool = False, settle: float = 0.0) -> bool:
        """Re-read changed files (all with `force`); True if what is served changed.

        With `settle`, a file modified less than `settle` seconds ago is left for a later call
        (it may still be being written).
        """
        with self._lock:
            changed = self._scan(force, settle)
            if not changed:
                return False
            profiles, errors = self._assemble()
            served_before = {n: p.version for n, p in self.profiles.items()}
            self.profiles, self.errors = profiles, errors
            self.on_change(profiles, errors)
            if served_before != {n: p.version for n, p in profiles.items()}:
                self.reloads += 1
                log.info("boost profiles now served: %s", _describe(profiles))
            return True

    def _scan(self, force: bool, settle: float) -> bool:
        paths = sorted(self.directory.glob("*.yaml"))
        changed = False
        self._deferred = False
        fresh_after = time.time_ns() - int(settle * 1e9)
        for gone in set(self._seen) - set(paths):
            self._seen.pop(gone)
            self._good.pop(gone, None)
            self._errors.pop(gone, None)
            changed = True
        for path in paths:
            signature = _signature(path)
            if signature is None or (not force and self._seen.get(path) == signature):
                continue
            if settle and signature[0] > fresh_after:
                self._deferred = True
                continue
            self._seen[path] = signature
            self._load(path)
            changed = True
        return changed

    def _load(self, path: Path) -> None:
        try:
            profile = bind_secret(load_boost_profile(path), self.pseudonymize)
        except (BoostProfileError, OSError) as exc:
            error = exc if isinstance(exc, BoostProfileError) else _unreadable(path, exc)
            self._errors[path] = error
            kept = self._good.get(path)
            still = f"still serving version {kept.version}" if kept else "not served"
            log.error("boost profile %s is invalid (%s):\n%s", path, still, error)
            return
        self._good[path] = profile
        self._errors.pop(path, None)

    def _assemble(self) -> tuple[dict[str, BoostProfile], list[str]]:
        profiles: dict[str, BoostProfile] = {}
        errors: list[str] = []
        for path, profile in sorted(self._good.items()):
            if profile.name in profiles:
                first = profiles[profile.name].source
                errors.append(
                    f"{path}:1:1: profile name {profile.name!r} is already used by "
                    f"{first}; not served"
                )
                continue
            profiles[profile.name] = profile
        for path, error in sorted(self._errors.items()):
            kept = self._good.get(path)
            still = f"still serving version {kept.version}" if kept else "not served"
            errors += [f"{e} ({still})" for e in error.errors]
        return profiles, errors

    # --- triggers -----------------------------------------------------------------------------

    def request_reload(self) -> None:
        """Ask the polling thread to reload now (what SIGHUP does)."""
        self._wake.set()

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._poll, name="boost-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _poll(self) -> None:
        while not self._stop.is_set():
            wait = min(self.interval, self.settle) if self._deferred else self.interval
            forced = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reload(force=forced, settle=self.settle)
            except Exception:  # never let the watcher die; the next poll retries
                log.exception("reloading boost profiles failed; keeping the served ones")


def lifespan(
    registry: BoostRegistry, inner: Callable[[Any], Any] | None = None
) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """An app lifespan that runs `inner` (if any) and the registry's watcher (+ SIGHUP)."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        registry.start()
        hup = _install_sighup(registry)
        try:
            if inner is None:
                yield
            else:
                async with inner(app):
                    yield
        finally:
            if hup:
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            registry.stop()

    return run


def _install_sighup(registry: BoostRegistry) -> bool:
    """SIGHUP reloads, when the loop runs in the main thread (not in tests' server threads)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return False
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, registry.request_reload)
    except (NotImplementedError, RuntimeError, ValueError):
        return False
    return True


def _signature(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _unreadable(path: Path, exc: OSError) -> BoostProfileError:
    return BoostProfileError(str(path), 1, 1, f"cannot read the file: {exc}")


def _describe(profiles: dict[str, BoostProfile]) -> str:
    return ", ".join(f"{n} {p.version}" for n, p in sorted(profiles.items())) or "none"
