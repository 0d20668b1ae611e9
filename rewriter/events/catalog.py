"""Catalog records: the typed shape and its validation. Pure: no I/O.

`validate_catalog` turns one raw catalog record into a `CatalogRecord` or a `Rejection` that names
the field as the caller spells it. `CatalogRecord.attributes` is the one definition of an
item's keyword attributes (brand, category, facets) that events carry and profiles fold.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from rewriter.events.event import Event
from rewriter.events.fields import (
    MAX_EVENT_TIME,
    MIN_CATALOG_TIME,
    Names,
    Raw,
    Rejection,
    _id_bytes,
    _Invalid,
    _number,
    _required_text,
    _text,
    _time,
    _values,
    iso,
)


def with_item_attributes(
    event: Event, record: CatalogRecord, attributes: Collection[str] | None = None
) -> Event:
    """`event` carrying `record`'s current attribute values (all, or only `attributes`)."""
    values = record.attributes()
    keep = {a: v for a, v in values.items() if attributes is None or a in attributes}
    return event.with_attributes(keep)


CATALOG_FIELDS: tuple[str, ...] = (
    "id", "title", "description", "brand", "category", "price", "created_at",
)  # fmt: skip


# --- catalog ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogRecord:
    """One catalog item. `facets` are extra keyword attributes (name → values)."""

    id: str
    title: str
    brand: str | None = None
    category: tuple[str, ...] = ()
    price: float | None = None
    created_at: float | None = None
    description: str | None = None
    facets: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def attributes(self) -> dict[str, tuple[str, ...]]:
        """Keyword attribute values, as events capture them: brand, category, facets."""
        found = {"brand": (self.brand,) if self.brand else (), "category": self.category}
        return {k: v for k, v in {**found, **self.facets}.items() if v}

    def to_doc(self) -> dict[str, object]:
        """The catalog-index document (doc id = `id`); created_at as ISO 8601 UTC."""
        doc: dict[str, object] = {"id": self.id, "title": self.title}
        optional: dict[str, object] = {
            "description": self.description,
            "brand": self.brand,
            "category": list(self.category) or None,
            "price": self.price,
            "created_at": None if self.created_at is None else iso(self.created_at),
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        doc.update({k: list(v) for k, v in self.facets.items() if v})
        return doc


def _split(value: object, separator: str) -> object:
    return value.split(separator) if isinstance(value, str) else value


def validate_catalog(
    raw: Raw,
    *,
    names: Names | None = None,
    separator: str = "|",
    facets: Sequence[str] = (),
) -> CatalogRecord | Rejection:
    """Check one raw catalog record (our field names; `facets` are extra keys to keep)."""
    names = names or {}

    def n(key: str) -> str:
        return names.get(key, key)

    try:
        return CatalogRecord(
            id=_id_bytes(
                _required_text(raw.get("id"), n("id"), "every catalog record needs an id"), n("id")
            ),
            title=_required_text(
                raw.get("title"), n("title"), "every catalog record needs a title"
            ),
            brand=_text(raw.get("brand"), n("brand")),
            category=_values(_split(raw.get("category", ()), separator), n("category")),
            price=_number(raw.get("price"), n("price")),
            created_at=_created_at(raw.get("created_at"), n("created_at")),
            description=_text(raw.get("description"), n("description"), 100_000),
            facets=_facets(raw, facets, separator),
        )
    except _Invalid as bad:
        return Rejection(bad.name, bad.reason)


def _created_at(value: object, name: str) -> float | None:
    if value is None or value == "":
        return None
    return _time(value, name, MIN_CATALOG_TIME, MAX_EVENT_TIME)


def _facets(raw: Raw, facets: Sequence[str], separator: str) -> dict[str, tuple[str, ...]]:
    clash = [f for f in facets if f in CATALOG_FIELDS]
    if clash:
        raise _Invalid(clash[0], f"{clash[0]} is a core field and cannot also be a facet")
    out = {f: _values(_split(raw[f], separator), f) for f in facets if raw.get(f) is not None}
    return {f: v for f, v in out.items() if v}
