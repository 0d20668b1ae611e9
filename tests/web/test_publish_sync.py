"""A publish on one proxy reaches another proxy of the deployment (its own profiles
directory, the same OpenSearch) within 5 seconds (web/versions.py `sync_live`)."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import PROFILE, Shop, csrf_of, signed_in

from rewriter.boost.profile import content_version
from rewriter.measure.serve_thread import serve_in_thread
from rewriter.web.app import build

pytestmark = pytest.mark.engine


def _served_version(url: str, key: str, index: str) -> str:
    headers = {"Authorization": f"Bearer {key}", "X-User-Id": "ret-1"}
    body = {"query": {"match": {"title": "shoe"}}}
    r = httpx.post(f"{url}/{index}/_search", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["personalization"]["boost_profile"]["version"]


def test_a_publish_reaches_the_other_proxy(shop: Shop, tmp_path: pytest.TempPathFactory) -> None:
    other_dir = tmp_path / "other-profiles"  # type: ignore[operator]
    other_dir.mkdir()
    (other_dir / "shop.yaml").write_text(PROFILE)
    with serve_in_thread(build(shop.settings, boost_dir=str(other_dir))) as other:
        key = shop.keys["search"]
        before = _served_version(other, key, shop.index)
        text = f"name: shop\nalpha: 0.5\n# published at {time.time()}\n"
        admin = signed_in(shop, "admin")
        csrf = csrf_of(admin.get("/_affinity/ui/boost").text)
        assert admin.post("/_affinity/ui/boost/shop/yaml", data={"csrf": csrf, "yaml": text})
        r = admin.post("/_affinity/ui/boost/shop/publish", data={"csrf": csrf, "reason": "sync"})
        assert r.status_code == 303, r.text
        published = time.monotonic()
        want = content_version(text.encode())
        assert _served_version(shop.url, key, shop.index) == want != before
        while _served_version(other, key, shop.index) != want:
            assert time.monotonic() - published < 5, "the other proxy missed the publish"
            time.sleep(0.2)
        assert (other_dir / "shop.yaml").read_text() == text
