"""A small shop for the dashboard, the storefront and auth: a catalog, three shoppers with
stored profiles, a boost profile directory, staff of every role, and the proxy with its
dashboard (rewriter/web/app.py `build`) on a free port with AFFINITY_AUTH=required.

The browser fixtures drive Debian's Chromium (/usr/bin/chromium, installed by
scripts/setup.sh) headless through Playwright; a failing browser test leaves a screenshot
in its pytest temp dir (`browser-failure.png`)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch
from playwright.sync_api import Browser, Page, sync_playwright

from rewriter import config, privacy
from rewriter.auth.store import AuthStore
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.profiles.fold import FoldConfig, empty_profile
from rewriter.web.app import build

PASSWORD = "correct-horse-1"
STAFF = {
    "viewer": "vera",
    "merchandiser": "mia",
    "publisher": "paul",
    "privacy": "pia",
    "admin": "ada",
}
PROFILE = "name: shop\nalpha: 1.0\nattributes: {brand: 1.0}\n"
DAY = 86400
SCRIPT_TITLE = "<script>window.pwned = 1</script> shoe"
ITEMS = {
    "o1": {"title": "shoe shoe", "brand": "other", "age_days": 400},
    "o2": {"title": "shoe shoe classic", "brand": "other", "age_days": 400},
    "n1": {"title": "shoe new arrival edition", "brand": "zenit", "age_days": 3},
    "a1": {"title": "shoe by acme for the road", "brand": "acme", "age_days": 400},
    "x1": {"title": SCRIPT_TITLE, "brand": "other", "age_days": 400},
}
SHOPPERS = {  # raw id: (sessions, lifetime_value, brand affinities)
    "ret-1": (5, 0.0, {"other": 4.0}),
    "vip-1": (1, 900.0, {"zenit": 4.0}),
    "new-1": (1, 0.0, {"other": 1.0}),
}


@dataclass
class Shop:
    url: str
    index: str
    settings: config.Settings
    boost_dir: Path
    es: OpenSearch
    keys: dict[str, str]


def _store_shopper(es: OpenSearch, s: config.Settings, raw: str) -> None:
    sessions, value, brands = SHOPPERS[raw]
    pseudonym = privacy.pseudonymize(raw, config.user_secret(s))
    doc = dict(empty_profile(pseudonym, FoldConfig()))
    now = time.time()
    doc.update(
        landmark=now,
        mass=20.0,
        first_seen=now - 30 * DAY,
        last_seen=now,
        affinities={"brand": brands},
        counters={"events": 20, "sessions": sessions, "purchases": 1, "lifetime_value": value},
    )
    es.index(index=s.indices.profiles, id=pseudonym, body=doc, refresh=True)


@pytest.fixture(scope="module")
def shop(
    opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    s = replace(bootstrapped, auth="required")
    index = f"{s.indices.prefix}webshop-{tmp_path_factory.mktemp('x').name[-6:].lower()}"
    index = re.sub(r"[^a-z0-9_-]", "", index)
    mappings = {
        "properties": {
            "title": {"type": "text"},
            "brand": {"type": "keyword"},
            "created_at": {"type": "date"},
        }
    }
    opensearch.indices.create(
        index=index, body={"settings": {"number_of_shards": 1}, "mappings": mappings}
    )
    now = time.time()
    for item_id, item in ITEMS.items():
        body = {
            "title": item["title"],
            "brand": item["brand"],
            "created_at": int((now - item["age_days"] * DAY) * 1000),
        }
        opensearch.index(index=index, id=item_id, body=body)
    opensearch.indices.refresh(index=index)
    for raw in SHOPPERS:
        _store_shopper(opensearch, s, raw)
    # Each module's proxy starts from its own profile file: no live version of an earlier
    # module may reach it through the publish sync.
    opensearch.indices.delete(index=s.indices.boost_versions, ignore_unavailable=True)
    store = AuthStore(opensearch, s.indices.auth)
    existing = {r.name for r in store.list_staff()}
    for role, name in STAFF.items():
        if name not in existing:
            store.add_staff(name, role, PASSWORD)
    keys = {
        scope: store.create_key(f"test {scope}", [scope])[1]
        for scope in ("search", "events", "admin")
    }
    directory = tmp_path_factory.mktemp("web-profiles")
    (directory / "shop.yaml").write_text(PROFILE)
    app = build(s, boost_dir=str(directory))
    with serve_in_thread(app) as url:
        yield Shop(url, index, s, directory, opensearch, keys)
    opensearch.indices.delete(index=index, ignore_unavailable=True)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


_SESSIONS: dict[tuple[str, str], httpx.Client] = {}


def signed_in(shop: Shop, role: str) -> httpx.Client:
    """An HTTP client with the session cookie of the staff member of `role` (one sign-in per
    proxy and role: argon2 is slow on purpose)."""
    if (shop.url, role) not in _SESSIONS:
        _SESSIONS[(shop.url, role)] = _sign_in(shop, role)
    return _SESSIONS[(shop.url, role)]


def _sign_in(shop: Shop, role: str) -> httpx.Client:
    client = httpx.Client(base_url=shop.url, timeout=60)
    r = client.post(
        "/_affinity/ui/login", data={"name": STAFF[role], "password": PASSWORD, "next": ""}
    )
    assert r.status_code == 303, r.text
    return client


# --- the browser ------------------------------------------------------------------------------

CHROMIUM = os.environ.get("AFFINITY_CHROMIUM", "/usr/bin/chromium")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run scripts/setup.sh (it installs Debian's chromium) "
            "or set AFFINITY_CHROMIUM",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture()
def page(browser: Browser, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context (no cookies); a screenshot is kept when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    failed = getattr(request.node, "report_call", None)
    if failed is not None and failed.failed:
        shot = tmp_path / "browser-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        print(f"screenshot of the failure: {shot}")
    context.close()


def screenshot(page: Page, name: str) -> None:
    """With AFFINITY_SCREENSHOTS=DIR, keep a screenshot of the page as DIR/name.png (the ones
    in docs/screenshots/ are made with AFFINITY_SCREENSHOTS=docs/screenshots)."""
    target = os.environ.get("AFFINITY_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)


def sign_in(page: Page, shop: Shop, role: str) -> None:
    page.goto(f"{shop.url}/_affinity/ui/login")
    page.fill("input[name=name]", STAFF[role])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/_affinity/ui/boost")
