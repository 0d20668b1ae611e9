"""A synthetic multi-category shop with known ground truth: `affinity shop generate`.

Shaped like a real e-commerce event log (views, carts, purchases in sessions, no queries),
so `affinity evaluate --fallback category_words` can be tried on it before real data:

- a catalog of CATEGORIES (dotted paths, `electronics.audio.headphone`), each sold by a few
  brands; items have a base popularity (Zipf-like) and titles/descriptions made of their
  brand and category words;
- users with category interests (2 categories, one preferred) and brand loyalty (1-2
  favourite brands among those selling in them, a loyalty probability);
- sessions with a current intent: one category (from the interests with P_INTEREST) and,
  with the user's loyalty probability, a brand focus (a favourite brand sold there);
- views within the intent, re-views of items the user viewed before (P_REVIEW), a cart
  after a view (P_CART) and a purchase after a cart (P_BUY); after a purchase, an item of the
  complementary category (bought together: phone -> headphones) with P_TOGETHER.

Deterministic for a seed. `Shop.truth` holds each user's favourite brands, interests and
loyalty, so tests can check that the evaluator and the profiles find them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CATEGORIES: dict[str, str] = {
    "electronics.smartphone": "electronics.audio.headphone",
    "electronics.audio.headphone": "electronics.smartphone",
    "computers.notebook": "computers.peripherals.mouse",
    "computers.peripherals.mouse": "computers.notebook",
    "appliances.kitchen.kettle": "appliances.kitchen.toaster",
    "appliances.kitchen.toaster": "appliances.kitchen.kettle",
    "apparel.shoes": "apparel.bag",
    "apparel.bag": "apparel.shoes",
    "furniture.living_room.sofa": "furniture.living_room.table",
    "furniture.living_room.table": "furniture.living_room.sofa",
    "sport.bicycle": "sport.helmet",
    "sport.helmet": "sport.bicycle",
}
"""Category path -> the category bought together with it."""

BRANDS: tuple[str, ...] = (
    "acme", "zenith", "orbis", "nova", "kestrel", "lumen", "borea", "quill",
    "tandem", "vireo", "halcyon", "ferro", "sable", "pico", "rune", "atlas",
)  # fmt: skip
BRANDS_PER_CATEGORY = 5
P_INTEREST = 0.85
P_REVIEW = 0.3
P_CART = 0.15
P_BUY = 0.5
P_TOGETHER = 0.4
BRAND_FOCUS = 8.0
"""How much more likely a session with a brand focus views an item of that brand."""
START = 1_700_000_000.0
DAYS = 60


@dataclass(frozen=True)
class UserTruth:
    brands: tuple[str, ...]
    interests: tuple[str, ...]
    loyalty: float


@dataclass
class Shop:
    catalog: list[dict[str, Any]]
    events: list[dict[str, Any]]
    truth: dict[str, UserTruth] = field(default_factory=dict)


def _sellers(rng: np.random.Generator) -> dict[str, list[str]]:
    """Category -> the brands that sell in it."""
    return {
        c: [str(b) for b in rng.choice(BRANDS, BRANDS_PER_CATEGORY, replace=False)]
        for c in CATEGORIES
    }


def _catalog(
    rng: np.random.Generator, n_items: int, sellers: dict[str, list[str]]
) -> list[dict[str, Any]]:
    items = []
    paths = list(CATEGORIES)
    for n in range(n_items):
        path = paths[n % len(paths)]
        brand = str(rng.choice(sellers[path]))
        words = path.replace("_", " ").split(".")
        items.append(
            {
                "id": f"p{n:05d}",
                "title": f"{brand.title()} {words[-1]} {rng.integers(100, 999)}",
                "brand": brand,
                "category": [path],
                "description": f"{' '.join(words)} by {brand}",
                "price": round(float(rng.uniform(5, 900)), 2),
                "weight": float(1.0 / (1 + rng.zipf(1.6) % 50)),
            }
        )
    return items


def _user(rng: np.random.Generator, sellers: dict[str, list[str]]) -> UserTruth:
    """Two interests; 1-2 favourite brands among those selling in them."""
    interests = tuple(str(c) for c in rng.choice(list(CATEGORIES), 2, replace=False))
    sold = sorted({b for c in interests for b in sellers[c]})
    brands = tuple(str(b) for b in rng.choice(sold, int(rng.integers(1, 3)), replace=False))
    return UserTruth(brands, interests, float(rng.uniform(0.5, 0.95)))


class _Picker:
    """Draws items of a category, favouring popular ones and a session's brand focus."""

    def __init__(self, catalog: list[dict[str, Any]]) -> None:
        self.by_category: dict[str, list[dict[str, Any]]] = {c: [] for c in CATEGORIES}
        for item in catalog:
            self.by_category[item["category"][0]].append(item)
        self.weights = {
            c: np.array([i["weight"] for i in items]) for c, items in self.by_category.items()
        }
        self.brands = {
            c: np.array([i["brand"] for i in items]) for c, items in self.by_category.items()
        }

    def pick(self, rng: np.random.Generator, category: str, brand: str | None) -> dict[str, Any]:
        w = self.weights[category] * np.where(self.brands[category] == brand, BRAND_FOCUS, 1.0)
        cumulative = np.cumsum(w)
        at = int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))
        return self.by_category[category][min(at, len(w) - 1)]

    def focus(self, rng: np.random.Generator, category: str, user: UserTruth) -> str | None:
        sold = {i["brand"] for i in self.by_category[category]}
        loyal = [b for b in user.brands if b in sold]
        return str(rng.choice(loyal)) if loyal and rng.random() < user.loyalty else None


def _session(
    rng: np.random.Generator,
    picker: _Picker,
    user: UserTruth,
    viewed: dict[str, list[str]],
) -> Iterator[tuple[str, str]]:
    """(type, item id) of one session; `viewed` (category -> item ids) grows."""
    interest = rng.random() < P_INTEREST
    category = (
        str(rng.choice(user.interests, p=[0.7, 0.3]))
        if interest
        else str(rng.choice(list(CATEGORIES)))
    )
    brand = picker.focus(rng, category, user)
    for _ in range(1 + min(int(rng.geometric(0.35)), 7)):
        before = viewed.setdefault(category, [])
        if before and rng.random() < P_REVIEW:
            item_id = str(rng.choice(before))
        else:
            item_id = picker.pick(rng, category, brand)["id"]
            before.append(item_id)
        yield "view", item_id
        if rng.random() < P_CART:
            yield "add_to_cart", item_id
            if rng.random() < P_BUY:
                yield "purchase", item_id
                if rng.random() < P_TOGETHER:
                    together = picker.pick(rng, CATEGORIES[category], brand)["id"]
                    viewed.setdefault(CATEGORIES[category], []).append(together)
                    yield "view", together
                    yield "purchase", together
                return


def _user_events(
    rng: np.random.Generator, picker: _Picker, user_id: str, user: UserTruth
) -> list[dict[str, Any]]:
    n_sessions = 2 + int(rng.poisson(4))
    starts = np.sort(rng.uniform(START, START + DAYS * 86_400, n_sessions))
    viewed: dict[str, list[str]] = {}
    out = []
    for s, start in enumerate(starts):
        t = float(start)
        for kind, item_id in _session(rng, picker, user, viewed):
            t += float(rng.uniform(20, 300))
            out.append(
                {
                    "event_id": f"{user_id}-{len(out)}",
                    "user_id": user_id,
                    "type": kind,
                    "item_id": item_id,
                    "timestamp": round(t, 3),
                    "session_id": f"{user_id}-s{s}",
                }
            )
    return out


def generate(users: int = 2000, items: int = 1200, seed: int = 0) -> Shop:
    """A shop of `users` users and `items` items; the same seed gives the same shop."""
    if users < 1 or items < len(CATEGORIES):
        raise ValueError(f"a shop needs at least 1 user and {len(CATEGORIES)} items")
    rng = np.random.default_rng(seed)
    sellers = _sellers(rng)
    catalog = _catalog(rng, items, sellers)
    picker = _Picker(catalog)
    shop = Shop(catalog, [])
    for u in range(users):
        user_id = f"u{u:05d}"
        shop.truth[user_id] = _user(rng, sellers)
        shop.events += _user_events(rng, picker, user_id, shop.truth[user_id])
    shop.events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
    return shop


def write(shop: Shop, out: Path) -> dict[str, Path]:
    """catalog.jsonl, events.jsonl (formats `affinity ingest` reads) and truth.json in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("catalog.jsonl", "events.jsonl", "truth.json")}
    public = [{k: v for k, v in i.items() if k != "weight"} for i in shop.catalog]
    paths["catalog.jsonl"].write_text("".join(json.dumps(i) + "\n" for i in public))
    paths["events.jsonl"].write_text("".join(json.dumps(e) + "\n" for e in shop.events))
    truth = {u: t.__dict__ for u, t in shop.truth.items()}
    paths["truth.json"].write_text(json.dumps({"users": truth, "together": CATEGORIES}, indent=1))
    return paths
