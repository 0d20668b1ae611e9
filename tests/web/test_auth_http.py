"""Who may do what, over HTTP against the real engine and proxy (AFFINITY_AUTH=required):
the role matrix cell by cell on the dashboard's endpoints, key scopes on the proxy's,
user tokens, CSRF, sessions of disabled accounts."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import PASSWORD, Shop, csrf_of, signed_in

from rewriter import config, privacy
from rewriter.auth import roles, tokens
from rewriter.auth.store import AuthStore

pytestmark = pytest.mark.engine

UI = "/_affinity/ui"
QUERY = {"query": {"match": {"title": "shoe"}}, "size": 10}


def _draft(client: httpx.Client, text: str = "name: shop\nalpha: 2.0\n") -> httpx.Response:
    csrf = csrf_of(client.get(f"{UI}/boost").text)
    return client.post(f"{UI}/boost/shop/yaml", data={"csrf": csrf, "yaml": text})


def _act(shop: Shop, client: httpx.Client, action: roles.Action) -> int:
    """The status of the dashboard request that takes `action`."""
    admin = signed_in(shop, "admin")
    if action in ("publish", "rollback"):
        assert _draft(admin).status_code == 303
    csrf = csrf_of(client.get(f"{UI}/boost").text)
    if action == "read":
        return client.get(f"{UI}/boost/shop").status_code
    if action == "read_audit":
        return client.get(f"{UI}/audit").status_code
    if action == "edit_draft":
        data = {"csrf": csrf, "yaml": "name: shop\nalpha: 1.5\n"}
        return client.post(f"{UI}/boost/shop/yaml", data=data).status_code
    if action == "preview":
        return client.get(
            f"{UI}/boost/shop/preview", params={"user": "ret-1", "q": "shoe", "index": shop.index}
        ).status_code
    if action == "publish":
        data = {"csrf": csrf, "reason": f"matrix test {time.time()}"}
        return client.post(f"{UI}/boost/shop/publish", data=data).status_code
    if action == "rollback":
        versions = AuthStore  # noqa: F841 (keep imports used by name below)
        admin_csrf = csrf_of(admin.get(f"{UI}/boost").text)
        r = admin.post(
            f"{UI}/boost/shop/publish", data={"csrf": admin_csrf, "reason": "for rollback"}
        )
        assert r.status_code == 303, r.text
        page = admin.get(f"{UI}/boost/shop/versions").text
        import re

        older = [v for v in re.findall(r'name="version" value="([0-9a-f]+)"', page)]
        assert older, page
        data = {"csrf": csrf, "version": older[0], "reason": "matrix rollback"}
        return client.post(f"{UI}/boost/shop/rollback", data=data).status_code
    if action == "privacy":
        return client.get(f"{UI}/users", params={"user": "ret-1"}).status_code
    raise AssertionError(f"no dashboard endpoint for {action}")


DASHBOARD_ACTIONS = (
    "read",
    "read_audit",
    "edit_draft",
    "preview",
    "publish",
    "rollback",
    "privacy",
)
"""manage_staff and manage_keys have no dashboard endpoint: `affinity staff|keys` take
OpenSearch's own credentials (their cells are tested in tests/unit/auth/test_roles.py)."""


@pytest.mark.parametrize("role", roles.ROLES)
@pytest.mark.parametrize("action", DASHBOARD_ACTIONS)
def test_role_matrix_cell(shop: Shop, role: str, action: roles.Action) -> None:
    client = signed_in(shop, role)
    status = _act(shop, client, action)
    if roles.allowed(role, action):
        assert status in (200, 303), (role, action, status)
    else:
        assert status == 403, (role, action, status)


def test_viewer_sees_no_publish_button(shop: Shop) -> None:
    admin = signed_in(shop, "admin")
    assert _draft(admin).status_code == 303
    viewer = signed_in(shop, "viewer").get(f"{UI}/boost/shop").text
    publisher = signed_in(shop, "publisher").get(f"{UI}/boost/shop").text
    assert 'id="publish"' in publisher and 'id="publish"' not in viewer
    assert 'id="save-form"' not in viewer


def test_form_post_without_csrf_is_refused(shop: Shop) -> None:
    client = signed_in(shop, "admin")
    r = client.post(f"{UI}/boost/shop/yaml", data={"yaml": "name: shop\nalpha: 9\n"})
    assert r.status_code == 403 and "CSRF" in r.text
    r = client.post(f"{UI}/boost/shop/yaml", data={"yaml": "name: shop\n", "csrf": "0" * 64})
    assert r.status_code == 403


def test_signed_out_pages_go_to_sign_in(shop: Shop) -> None:
    r = httpx.get(f"{shop.url}{UI}/boost")
    assert r.status_code == 303 and r.headers["location"].startswith(f"{UI}/login")
    r = httpx.post(f"{shop.url}{UI}/boost/shop/yaml", data={"yaml": "name: shop\n"})
    assert r.status_code == 401


def test_wrong_password_is_refused(shop: Shop) -> None:
    r = httpx.post(f"{shop.url}{UI}/login", data={"name": "vera", "password": "nope-nope"})
    assert r.status_code == 401 and "wrong name or password" in r.text


def test_disabled_account_loses_its_session(shop: Shop) -> None:
    store = AuthStore(shop.es, shop.settings.indices.auth)
    name = f"temp{int(time.time() * 1000) % 10**8}"
    store.add_staff(name, "viewer", PASSWORD)
    client = httpx.Client(base_url=shop.url)
    assert client.post(f"{UI}/login", data={"name": name, "password": PASSWORD}).status_code == 303
    assert client.get(f"{UI}/boost").status_code == 200
    store.disable_staff(name)
    assert client.get(f"{UI}/boost").status_code == 303  # back to sign-in
    r = client.post(f"{UI}/login", data={"name": name, "password": PASSWORD})
    assert r.status_code == 401


def _search(shop: Shop, key: str | None, **headers: str) -> httpx.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{shop.url}/{shop.index}/_search", json=QUERY, headers=headers)


def _event(shop: Shop, key: str | None, events: list[dict]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{shop.url}/events", json=events, headers=headers, timeout=60)


def _click(user: str, item: str = "o1") -> dict:
    return {"type": "click", "user_id": user, "item_id": item, "timestamp": time.time()}


def test_key_scopes_on_the_proxy(shop: Shop) -> None:
    search, events, admin = (shop.keys[s] for s in ("search", "events", "admin"))
    assert _search(shop, search).status_code == 200
    assert _search(shop, events).status_code == 403
    assert _search(shop, admin).status_code == 403
    assert _search(shop, None).status_code == 401
    assert _search(shop, "afk_0000_nothing").status_code == 401
    assert _search(shop, search[:-2] + "xx").status_code == 401
    r = _event(shop, search, [_click("ret-1")])
    assert r.status_code == 403 and "'events' scope" in r.json()["error"]["reason"]
    assert _event(shop, events, [_click("ret-1")]).status_code == 202
    assert httpx.get(f"{shop.url}/_affinity/health").status_code in (200, 503)


def test_search_key_is_refused_on_the_dashboard(shop: Shop) -> None:
    headers = {"Authorization": f"Bearer {shop.keys['search']}"}
    r = httpx.get(f"{shop.url}{UI}/boost", headers=headers)
    assert r.status_code == 403 and "lacks the &#39;admin&#39; scope" in r.text
    headers = {"Authorization": f"Bearer {shop.keys['admin']}"}
    assert httpx.get(f"{shop.url}{UI}/boost", headers=headers).status_code == 200


def test_revoked_key_stops_working(shop: Shop) -> None:
    store = AuthStore(shop.es, shop.settings.indices.auth)
    record, key = store.create_key("short-lived", ["search"])
    assert _search(shop, key).status_code == 200
    store.revoke_key(record.key_id)
    deadline = time.monotonic() + 15
    while _search(shop, key).status_code == 200:
        assert time.monotonic() < deadline, "a revoked key still searches after 15 s"
        time.sleep(0.5)
    assert _search(shop, key).status_code == 401


def test_user_token_searches_and_sends_events_as_its_user_only(shop: Shop) -> None:
    secret = config.user_secret(shop.settings)
    token = tokens.issue_user_token(secret, "ret-1")
    r = _search(shop, token)
    assert r.status_code == 200 and r.json()["personalization"]["applied"]
    assert _search(shop, token, **{"X-User-Id": "vip-1"}).status_code == 403
    r = _event(
        shop,
        token,
        [
            _click("ret-1"),
            _click("vip-1"),
            {"type": "click", "item_id": "o2", "timestamp": time.time()},
        ],
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["accepted"] + body["duplicates"] == 2 and body["rejected"] == 1, body["rejections"]
    assert body["rejections"][0]["index"] == 1 and body["rejections"][0]["field"] == "user_id"
    forged = tokens.issue_user_token(b"some-other-secret-0123456789abcd", "ret-1")
    assert _search(shop, forged).status_code == 401


def test_sign_in_is_rate_limited(shop: Shop) -> None:
    store = AuthStore(shop.es, shop.settings.indices.auth)
    name = f"rl{int(time.time() * 1000) % 10**8}"
    store.add_staff(name, "viewer", PASSWORD)
    for _ in range(5):
        r = httpx.post(f"{shop.url}{UI}/login", data={"name": name, "password": "wrong-pass"})
        assert r.status_code == 401
    r = httpx.post(f"{shop.url}{UI}/login", data={"name": name, "password": PASSWORD})
    assert r.status_code == 429 and "too many failed sign-ins" in r.text


def test_privacy_operations_are_confirmed_and_audited_by_pseudonym(shop: Shop) -> None:
    client = signed_in(shop, "privacy")
    page = client.get(f"{UI}/users", params={"user": "new-1"}).text
    assert 'id="profile"' in page and "sessions 1" in page
    csrf = csrf_of(page)
    data = {"csrf": csrf, "user": "new-1", "confirm": "new-2"}
    r = client.post(f"{UI}/users/delete", data=data)
    assert r.status_code == 400 and "type the user id again" in r.text
    r = client.post(f"{UI}/users/export", data={**data, "confirm": "new-1"})
    assert r.status_code == 200 and r.json()["user_id"] == "new-1"
    r = client.post(f"{UI}/users/delete", data={**data, "confirm": "new-1"})
    assert r.status_code == 200 and "user deleted" in r.text
    page = client.get(f"{UI}/users", params={"user": "new-1"}).text
    assert 'id="no-profile"' in page
    audit = client.get(f"{UI}/audit").text
    pseudonym = privacy.pseudonymize("new-1", config.user_secret(shop.settings))
    assert "user_delete" in audit and pseudonym in audit and "new-1" not in audit
