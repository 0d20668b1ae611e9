"""Catalog records: the typed shape and its validation. Pure: no I/O.

`validate_catalog` turns one raw catalog record into a `CatalogRecord` or a `Rejection` that names
the field as the caller spells it. `item_attributes` is the one definition of an item's keyword
attributes (brand, category, facets) that events carry and profiles fold, from its catalog
document: records and reads of the catalog index both use it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
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


def item_attributes(
    source: Mapping[str, object], names: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """An item's keyword attribute values, as events capture them and profiles fold them.

    `source` is the item's catalog document (what `CatalogRecord.to_doc` writes, or any
    document another tool put in the catalog index); for each of `names` it has, its value
    or list of values as trimmed, non-empty text, each once, in order. The one definition:
    records, the write path's catalog reads and the rebuild's all use it."""
    out: dict[str, tuple[str, ...]] = {}
    for name in names:
        raw = source.get(name)
        values = raw if isinstance(raw, list) else () if raw is None else (raw,)
        texts = (str(v).strip() for v in values if v is not None and not isinstance(v, Mapping))
        kept = tuple(dict.fromkeys(t for t in texts if t))
        if kept:
            out[name] = kept
    return out


def with_item_attributes(
    event: Event, record: CatalogRecord, attributes: Collection[str] | None = None
) -> Event:
    """`event` carrying `record`'s current attribute values (all, or only `attributes`)."""
    names = record.attribute_names() if attributes is None else attributes
    return event.with_attributes(item_attributes(record.to_doc(), names))


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

    def attribute_names(self) -> tuple[str, ...]:
        """The record's keyword attributes: brand, category and its facets."""
        return ("brand", "category", *self.facets)

    def attributes(self) -> dict[str, tuple[str, ...]]:
        """Keyword attribute values, as events capture them (`item_attributes` of its
        catalog document): brand, category, facets."""
        return item_attributes(self.to_doc(), self.attribute_names())

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
