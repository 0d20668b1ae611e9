"""The `placements:` section: parsing with line numbers, and which placement a request gets."""

from __future__ import annotations

import pytest

from rewriter.boost.placements import Request, decide, slot_named, variant_of
from rewriter.boost.profile import parse_boost_profile
from rewriter.boost.yaml_fields import BoostProfileError

PROFILE = """\
name: shop
segments:
  returning: {when: {sessions: {gte: 3}}}
placements:
  home_hero:
    - id: ship-free
      segment: returning
      priority: 10
      cap_per_day: 2
      content: {title: Free shipping, offer_code: SHIPFREE}
    - id: mobile-only
      device: mobile
      priority: 5
      content: {title: App offer}
    - id: welcome
      content: {title: Welcome}
  search_top:
    - id: rain
      query: [rain jacket]
      schedule: {start: 2026-01-01, end: 2030-01-01}
      content: {title: Rain gear}
    - id: hero-test
      experiment: copy-test
      content: {title: base, link: /x}
      variants: {a: {}, b: {title: other}}
"""
NOW = 1.8e9  # 2027


def _slots():
    return parse_boost_profile(PROFILE, "shop.yaml").placements


def test_priority_segments_device_and_fallthrough() -> None:
    hero = slot_named(_slots(), "home_hero")
    assert hero is not None and not hero.in_search
    pick = decide(hero, Request(NOW, segments=("returning",), device="mobile", user="u"))
    assert pick is not None and pick.placement.id == "ship-free"
    assert pick.content == {"title": "Free shipping", "offer_code": "SHIPFREE"}
    mobile = decide(hero, Request(NOW, device="mobile", user="u"))
    assert mobile is not None and mobile.placement.id == "mobile-only"
    assert decide(hero, Request(NOW, device="desktop")).placement.id == "welcome"  # type: ignore[union-attr]


def test_frequency_cap_moves_to_the_next_placement() -> None:
    hero = slot_named(_slots(), "home_hero")
    assert hero is not None
    request = Request(NOW, segments=("returning",), user="u")
    capped = decide(hero, request, shown_today=lambda pid: 2 if pid == "ship-free" else 0)
    assert capped is not None and capped.placement.id == "welcome"


def test_query_schedule_and_variants() -> None:
    top = slot_named(_slots(), "search_top")
    assert top is not None and top.in_search
    rain = decide(top, Request(NOW, text="red rain jacket"))
    assert rain is not None and rain.placement.id == "rain"
    late = decide(top, Request(2e9, text="red rain jacket", user="u1"))
    assert late is not None and late.placement.id == "hero-test"  # the schedule ended
    variants = {variant_of(top.placements[1], f"user-{n}") for n in range(50)}
    assert variants == {"a", "b"}
    assert variant_of(top.placements[1], "user-7") == variant_of(top.placements[1], "user-7")
    chosen = [decide(top, Request(2e9, user=f"user-{n}")) for n in range(20)]
    assert {c.content["title"] for c in chosen if c} == {"base", "other"}
    assert all(c.content["link"] == "/x" for c in chosen if c)


@pytest.mark.parametrize(
    ("snippet", "line", "words"),
    [
        ("  home_hero:\n    - content: {title: x}\n", 5, "missing required key 'id'"),
        ("  home_hero:\n    - id: a\n", 5, "missing required key 'content'"),
        ("  home_hero:\n    - id: a\n      content: {t: 1}\n      segment: nobody\n", 7, "nobody"),
        (
            "  home_hero:\n    - id: a\n      content: {t: 1}\n      cap_per_dya: 2\n",
            7,
            "cap_per_day",
        ),
        ("  home_hero:\n    - id: a\n      content: text\n", 6, "content must be a mapping"),
        (
            "  s:\n    - id: a\n      content: {t: 1}\n  t:\n    - id: a\n      content: {t: 1}\n",
            8,
            "duplicate placement id",
        ),
        ("  s:\n    - id: a\n      content: {t: 1}\n      variants: {v: {}}\n", 5, "experiment"),
    ],
)
def test_errors_name_the_line(snippet: str, line: int, words: str) -> None:
    text = "name: shop\nsegments: {}\nplacements:\n" + snippet
    with pytest.raises(BoostProfileError) as err:
        parse_boost_profile(text, "shop.yaml")
    found = [e for e in err.value.errors if words in e.message]
    assert found, str(err.value)
    assert found[0].line == line and str(found[0]).startswith(f"shop.yaml:{line}:")
