"""The issue's scenarios in a real browser (headless Chromium through Playwright), end to end
against the real engine and proxy. The tests of this module run in order and build on each
other: rules made through the forms, published, rolled back, then audited.

AFFINITY_SCREENSHOTS=docs/screenshots keeps the screenshots the README shows."""

from __future__ import annotations

import re

import httpx
import pytest
from conftest import SCRIPT_TITLE, Shop, csrf_of, screenshot, sign_in
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.engine

UI = "/_affinity/ui"
BEFORE: dict[str, list[str]] = {}


def _ranking(shop: Shop, user: str) -> list[str]:
    """The proxy's ranking of `shoe` for `user`, through a `search` key."""
    headers = {"Authorization": f"Bearer {shop.keys['search']}", "X-User-Id": user}
    body = {"query": {"match": {"title": "shoe"}}, "size": 10}
    r = httpx.post(f"{shop.url}/{shop.index}/_search", json=body, headers=headers, timeout=60)
    assert r.status_code == 200, r.text
    return [h["_id"] for h in r.json()["hits"]["hits"]]


def _fill_segment(page: Page, i: int, name: str, field: str, value: str) -> None:
    page.fill(f"input[name=seg_name_{i}]", name)
    page.select_option(f"select[name=seg_field_{i}]", field)
    page.select_option(f"select[name=seg_op_{i}]", "gte")
    page.fill(f"input[name=seg_value_{i}]", value)


def _fill_rule(
    page: Page, i: int, rule: str, segment: str, target: str, value: str, w: str
) -> None:
    page.fill(f"input[name=rule_id_{i}]", rule)
    page.select_option(f"select[name=rule_action_{i}]", "boost")
    page.fill(f"input[name=rule_segment_{i}]", segment)
    page.select_option(f"select[name=rule_target_{i}]", target)
    page.fill(f"input[name=rule_value_{i}]", value)
    page.fill(f"input[name=rule_amount_{i}]", w)


def test_headless_chromium_loads_a_page(shop: Shop, page: Page) -> None:
    page.goto(f"{shop.url}{UI}/login")
    expect(page).to_have_title(re.compile("Sign in"))
    assert page.evaluate("navigator.userAgent").find("Chrome") >= 0


def test_merchandiser_makes_rules_through_the_forms(shop: Shop, page: Page) -> None:
    BEFORE["ret-1"], BEFORE["vip-1"] = _ranking(shop, "ret-1"), _ranking(shop, "vip-1")
    sign_in(page, shop, "merchandiser")
    page.click("text=shop")
    _fill_segment(page, 0, "returning", "sessions", "3")
    _fill_rule(page, 0, "promote-new-arrivals", "returning", "created_within", "30d", "lots")
    page.click("#save-form")
    problems = page.locator("#problems")
    expect(problems).to_contain_text("rules[0].boost.weight: expected a number, got 'lots'")
    expect(problems).to_contain_text("shop.yaml:")  # file:line:column, as boost check prints
    expect(page.locator("input[name=rule_amount_0]")).to_have_class(re.compile("bad"))
    expect(page.locator("#publish")).to_have_count(0)  # a merchandiser has no publish button
    screenshot(page, "editor-validation-error")
    page.click(".tab[data-tab=yaml]")
    expect(page.locator("ol.yaml-lines li.bad")).to_contain_text("lots")
    page.click(".tab[data-tab=form]")
    page.fill("input[name=rule_amount_0]", "5")
    page.click("#save-form")
    expect(page.locator("#valid")).to_be_visible()
    _fill_segment(page, 1, "high_value", "lifetime_value", "500")
    _fill_rule(page, 1, "highlight-acme", "high_value", "brand", "acme", "5")
    page.click("#save-form")
    expect(page.locator("#valid")).to_be_visible()
    assert _ranking(shop, "ret-1") == BEFORE["ret-1"]  # a draft changes nothing live


def test_merchandiser_previews_the_draft(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "merchandiser")
    page.goto(f"{shop.url}{UI}/boost/shop/preview")
    page.fill("input[name=user]", "ret-1")
    page.fill("input[name=q]", "shoe")
    page.fill("input[name=index]", shop.index)
    page.click("#run-preview")
    draft = page.locator("#col-draft li .title").first
    expect(draft).to_have_text("shoe new arrival edition")
    expect(page.locator("#col-draft")).to_contain_text("rules fired promote-new-arrivals")
    expect(page.locator("#col-live")).not_to_contain_text("promote-new-arrivals")
    expect(page.locator("#diff-summary")).to_contain_text("promote-new-arrivals")
    screenshot(page, "preview")


def test_viewer_cannot_publish(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "viewer")
    page.goto(f"{shop.url}{UI}/boost/shop")
    expect(page.locator("#editor-form")).to_be_visible()
    expect(page.locator("#publish")).to_have_count(0)
    csrf = csrf_of(page.content())
    r = page.request.post(
        f"{shop.url}{UI}/boost/shop/publish", form={"csrf": csrf, "reason": "sneaky"}
    )
    assert r.status == 403 and "may not publish" in r.text()


def test_form_post_without_csrf_is_refused(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "publisher")
    r = page.request.post(f"{shop.url}{UI}/boost/shop/publish", form={"reason": "no token"})
    assert r.status == 403 and "CSRF" in r.text()


def test_publisher_publishes_and_search_follows(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "publisher")
    page.goto(f"{shop.url}{UI}/boost/shop")
    page.fill("#publish-form input[name=reason]", "new arrivals for returning shoppers")
    page.click("#publish")
    page.wait_for_url("**/boost/shop/versions**")
    expect(page.locator("#versions tr.live")).to_contain_text("new arrivals for returning")
    assert _ranking(shop, "ret-1")[0] == "n1" != BEFORE["ret-1"][0]
    assert _ranking(shop, "vip-1")[0] == "a1" != BEFORE["vip-1"][0]


def test_rollback_restores_the_old_ranking(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "publisher")
    page.goto(f"{shop.url}{UI}/boost/shop/versions")
    row = page.locator("#versions tr", has_text="before the first publish")
    row.locator("input[name=reason]").fill("back to plain personalization")
    row.locator("button").click()
    page.wait_for_url("**/boost/shop/versions**")
    expect(page.locator("#versions tr.live")).to_contain_text("before the first publish")
    assert _ranking(shop, "ret-1") == BEFORE["ret-1"]
    assert _ranking(shop, "vip-1") == BEFORE["vip-1"]


def test_audit_log_lists_each_step(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "viewer")
    page.goto(f"{shop.url}{UI}/audit")
    table = page.locator("#audit")
    expect(table.locator("tr.audit-draft_edit", has_text="mia").first).to_be_visible()
    expect(table.locator("tr.audit-publish", has_text="paul").first).to_contain_text(
        "new arrivals for returning shoppers"
    )
    expect(table.locator("tr.audit-rollback", has_text="paul").first).to_be_visible()
    assert "ret-1" not in page.content() and "vip-1" not in page.content()
    screenshot(page, "audit-log")


def test_a_rule_named_script_renders_as_text(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "merchandiser")
    page.goto(f"{shop.url}{UI}/boost/shop#yaml")
    hostile = "name: shop\nrules:\n  - id: <script>window.pwned=2</script>\n    hide: {brand: x}\n"
    page.fill("textarea[name=yaml]", hostile)
    page.click("#tab-yaml button[type=submit]")
    page.click(".tab[data-tab=yaml]")
    expect(page.locator("#tab-yaml ol.yaml-lines")).to_contain_text("<script>window.pwned=2")
    assert page.evaluate("window.pwned === undefined")
    page.goto(f"{shop.url}{UI}/audit")
    assert page.evaluate("window.pwned === undefined")
    page.goto(f"{shop.url}{UI}/boost/shop")
    page.click("text=Discard draft")


def test_storefront_marker_why_and_generic_switch(shop: Shop, page: Page) -> None:
    sign_in(page, shop, "viewer")
    page.goto(f"{shop.url}/_affinity/shop/?index={shop.index}")
    page.fill("#shop-user", "ret-1")
    page.fill("#shop-q", "shoe")
    page.click("#shop-search")
    expect(page.locator("#shop-marker")).to_be_visible()
    expect(page.locator("#shop-results .why-note").first).to_contain_text("you like brand other")
    expect(page.locator("#shop-results li", has_text=SCRIPT_TITLE)).to_have_count(1)
    assert page.evaluate("window.pwned === undefined")
    personalized = page.locator("#shop-results li").evaluate_all(
        "els => els.map(e => e.dataset.id)"
    )
    screenshot(page, "storefront")
    page.check("#shop-generic")
    expect(page.locator("#shop-marker")).to_be_hidden()
    expect(page.locator("#shop-status")).to_contain_text("generic order")
    generic = page.locator("#shop-results li").evaluate_all("els => els.map(e => e.dataset.id)")
    body = {"query": {"multi_match": {"query": "shoe", "fields": ["title^2", "description"]}}}
    engine = shop.es.search(index=shop.index, body={**body, "size": 10})
    assert generic == [h["_id"] for h in engine["hits"]["hits"]]
    assert personalized != generic
    page.uncheck("#shop-generic")
    expect(page.locator("#shop-marker")).to_be_visible()
    page.locator("#shop-results li .title").first.click()
    expect(page.locator("#shop-status")).to_contain_text("sent: 202")
