"""A small shop for the dashboard, the storefront and auth: a catalog, three shoppers with
stored profiles, a boost profile directory, staff of every role, and the proxy with its
dashboard (rewriter/web/app.py `build`) on a free port with AFFINITY_AUTH=required.

The browser fixtures drive Debian's Chromium (/usr/bin/chromium, installed by
scripts/setup.sh) headless through Playwright; a failing browser test leaves a screenshot
in its pytest temp dir (`browser-failure.png`)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from opensearchpy import OpenSearch

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
    "ret-1": (5, 0.0, {"zenit": 4.0}),
    "vip-1": (1, 900.0, {"acme": 4.0}),
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
            "created_at": {"type": "date", "format": "epoch_second"},
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
            "created_at": int(now - item["age_days"] * DAY),
        }
        opensearch.index(index=index, id=item_id, body=body)
    opensearch.indices.refresh(index=index)
    for raw in SHOPPERS:
        _store_shopper(opensearch, s, raw)
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
    (directory / "default.yaml").write_text("name: default\n")
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
