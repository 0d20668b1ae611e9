"""The synthetic shop: deterministic, readable by the ingest parsers, and shaped by its truth."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from rewriter.events.event import Event
from rewriter.ingest import catalog_files, event_files
from rewriter.measure import shop


@pytest.fixture(scope="module")
def made() -> shop.Shop:
    return shop.generate(users=150, items=240, seed=3)


def test_same_seed_same_shop_other_seed_other_shop(made: shop.Shop) -> None:
    again = shop.generate(users=150, items=240, seed=3)
    assert again.events == made.events and again.catalog == made.catalog
    assert shop.generate(users=150, items=240, seed=4).events != made.events


def test_files_are_what_affinity_ingest_reads(made: shop.Shop, tmp_path: Path) -> None:
    paths = shop.write(made, tmp_path)
    records = list(catalog_files.parse_catalog(paths["catalog.jsonl"], "jsonl", None))
    assert len(records) == 240 and all(not hasattr(r, "reason") for _, r in records)
    with paths["events.jsonl"].open() as handle:
        parsed = list(
            event_files.parse_events(handle, "jsonl", ("view", "add_to_cart", "purchase"))
        )
    events = [e for _, e in parsed if isinstance(e, Event)]
    assert len(events) == len(parsed) == len(made.events)
    assert all(e.session_id for e in events)
    assert '"together"' in paths["truth.json"].read_text()


def test_users_favour_their_brands_and_interests(made: shop.Shop) -> None:
    brand = {i["id"]: i["brand"] for i in made.catalog}
    category = {i["id"]: i["category"][0] for i in made.catalog}
    views = [e for e in made.events if e["type"] == "view"]
    users = sorted(made.truth)
    other = dict(zip(users, users[1:] + users[:1], strict=True))  # someone else's truth

    def share(owner: dict[str, str]) -> tuple[float, float]:
        truth = [made.truth[owner[e["user_id"]]] for e in views]
        loyal = sum(brand[e["item_id"]] in t.brands for e, t in zip(views, truth, strict=True))
        hits = sum(category[e["item_id"]] in t.interests for e, t in zip(views, truth, strict=True))
        return loyal / len(views), hits / len(views)

    loyal, interested = share({u: u for u in users})
    loyal_by_chance, interested_by_chance = share(other)
    assert loyal > 2 * loyal_by_chance and interested > 0.7 > 3 * interested_by_chance


def test_users_come_back_to_items_and_buy_items_together(made: shop.Shop) -> None:
    views: dict[str, Counter[str]] = defaultdict(Counter)
    for e in made.events:
        if e["type"] == "view":
            views[e["user_id"]][e["item_id"]] += 1
    reviewed = sum(any(n > 1 for n in c.values()) for c in views.values())
    assert reviewed / len(views) > 0.5
    category = {i["id"]: i["category"][0] for i in made.catalog}
    sessions: dict[str, set[str]] = defaultdict(set)
    for e in made.events:
        if e["type"] == "purchase":
            sessions[e["session_id"]].add(category[e["item_id"]])
    together = sum(
        any(shop.CATEGORIES[c] in bought for c in bought) for bought in sessions.values()
    )
    assert together > 0.2 * len(sessions)
    assert len({e["session_id"] for e in made.events}) > 2 * len(made.truth)


def test_a_shop_needs_users_and_items_of_every_category() -> None:
    with pytest.raises(ValueError, match="at least 1 user"):
        shop.generate(users=0)
    with pytest.raises(ValueError, match="12 items"):
        shop.generate(users=5, items=3)
