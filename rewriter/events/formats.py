"""Import parsers: files of events and catalog records in the formats affinity reads.

Everything here is pure: parsers take an iterable of text lines (an open file, a list) and
yield `(line_no, Event | Rejection)` (or `CatalogRecord | Rejection`) pairs, so the CLI can
count, print and continue instead of stopping at the first bad row. Validation itself is
events/event.py's; a parser only renames fields and tells `validate` how the source spells them, so
a rejection names the CSV column or JSON path the user actually sent.

Accepted sources:
- canonical JSONL (the shape `Event.to_doc` writes, so the events log reads back unchanged),
- CSV with a column mapping (`FieldMapping`, loadable from a small YAML/JSON file),
- Segment `track` calls (ecommerce spec names mapped to our types; `Order Completed` yields
  one purchase per product),
- OpenSearch User Behavior Insights `ubi_events` documents,
- MovieLens `movies.csv` / `ratings.csv`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import orjson
import yaml

from rewriter.events.catalog import CATALOG_FIELDS, CatalogRecord, validate_catalog
from rewriter.events.event import DEFAULT_EVENT_TYPES, Event, validate
from rewriter.events.fields import Names, Raw, Rejection, _Invalid, _number

MOVIELENS_EVENT_TYPES: tuple[str, ...] = ("rating_high", "rating_low")

# --- line-oriented parsers ----------------------------------------------------------------

Parsed = Iterator[tuple[int, Event | Rejection]]


def _json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Raw | Rejection]]:
    """Non-blank lines as JSON objects, with 1-based line numbers."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as err:
            yield line_no, Rejection("record", f"record is not valid JSON: {err.msg}", line_no)
            continue
        if not isinstance(doc, dict):
            reason = f"record must be a JSON object, got {type(doc).__name__}"
            yield line_no, Rejection("record", reason, line_no)
            continue
        yield line_no, doc


def _at(line_no: int, result: Event | Rejection) -> tuple[int, Event | Rejection]:
    return line_no, replace(result, line=line_no) if isinstance(result, Rejection) else result


def parse_jsonl(lines: Iterable[str], known_types: Collection[str] = DEFAULT_EVENT_TYPES) -> Parsed:
    """Events in canonical shape, one JSON object per line (blank lines skipped)."""
    for line_no, doc in _json_lines(lines):
        yield _at(line_no, doc if isinstance(doc, Rejection) else validate(doc, known_types))


# --- mappings and CSV ---------------------------------------------------------------------

EVENT_FIELDS: tuple[str, ...] = (
    "event_id", "user_id", "type", "item_id", "timestamp", "query", "query_id", "position",
    "value", "price", "quantity", "session_id", "experiment", "variant", "opt_out",
)  # fmt: skip


class MappingError(ValueError):
    """A mapping file or a CSV header does not fit; the message names file and key."""


@dataclass(frozen=True)
class FieldMapping:
    """How a source spells our fields.

    fields: our field → source column or key (`{"item_id": "sku"}`); unmapped fields are
        read from a column of their own name. Events also accept `context.<key>` and
        `attributes.<name>` targets; multi-valued columns are split on `separator`.
    facets: (catalog) extra source columns kept as keyword facets under their own names.
    """

    fields: Mapping[str, str] = field(default_factory=dict, hash=False)
    separator: str = "|"
    facets: tuple[str, ...] = ()

    def source(self, target: str) -> str:
        return self.fields.get(target, target)


def load_mapping(path: Path) -> FieldMapping:
    """Read a mapping from YAML or JSON: `{fields: {our: theirs}, separator: "|", facets: []}`."""
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise MappingError(f"{path}: cannot read the mapping file: {err}") from err
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise MappingError(f"{path}: a mapping file must be an object with key 'fields'")
    unknown = sorted(set(doc) - {"fields", "separator", "facets"})
    if unknown:
        raise MappingError(f"{path}: unknown key {unknown[0]!r}; use fields, separator, facets")
    fields, separator, facets = doc.get("fields", {}), doc.get("separator", "|"), doc.get("facets")
    if not isinstance(fields, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in fields.items()
    ):
        raise MappingError(f"{path}: 'fields' must map our field names to source names")
    if not isinstance(separator, str) or not separator:
        raise MappingError(f"{path}: 'separator' must be a non-empty string")
    if not isinstance(facets, list | None) or not all(isinstance(f, str) for f in facets or []):
        raise MappingError(f"{path}: 'facets' must be a list of source column names")
    return FieldMapping(fields=dict(fields), separator=separator, facets=tuple(facets or ()))


def _check_targets(
    mapping: FieldMapping, allowed: Collection[str], prefixes: tuple[str, ...]
) -> None:
    for target in mapping.fields:
        if target not in allowed and not target.startswith(prefixes):
            raise MappingError(
                f"mapping field {target!r} is not one of ours ({', '.join(allowed)})"
            )


def _csv_rows(lines: Iterable[str], needed: Iterable[str]) -> Iterator[tuple[int, Raw | Rejection]]:
    """CSV rows as dicts (empty cells dropped), numbered by their first physical line."""
    reader = csv.DictReader(lines)
    header = reader.fieldnames or []
    missing = [c for c in needed if c not in header]
    if missing:
        raise MappingError(f"CSV header has no column {missing[0]!r}; columns are {header}")
    last = reader.line_num
    for row in reader:
        line_no, last = last + 1, reader.line_num
        if None in row or None in row.values():
            reason = f"row has a different number of fields than the header ({len(header)})"
            yield line_no, Rejection("row", reason, line_no)
            continue
        yield line_no, {k: v for k, v in row.items() if v is not None and v.strip() != ""}


def _remap_event(row: Raw, mapping: FieldMapping) -> dict[str, object]:
    raw: dict[str, object] = {}
    nested: dict[str, dict[str, object]] = {"context": {}, "attributes": {}}
    targets = {**{f: f for f in EVENT_FIELDS}, **mapping.fields}
    for target in targets:
        value = row.get(mapping.source(target))
        if value is None:
            continue
        group, _, key = target.partition(".")
        if group in nested and key:
            split = isinstance(value, str) and group == "attributes"
            nested[group][key] = value.split(mapping.separator) if split else value
        else:
            raw[target] = value
    raw.update({g: d for g, d in nested.items() if d})
    return raw


def parse_csv(
    lines: Iterable[str],
    mapping: FieldMapping | None = None,
    known_types: Collection[str] = DEFAULT_EVENT_TYPES,
) -> Parsed:
    """Events from CSV (open the file with newline=""); rejections name the CSV column."""
    mapping = mapping or FieldMapping()
    _check_targets(mapping, EVENT_FIELDS, ("context.", "attributes."))
    names = {t: s for t, s in mapping.fields.items() if "." not in t}
    for line_no, row in _csv_rows(lines, mapping.fields.values()):
        if isinstance(row, Rejection):
            yield line_no, row
            continue
        yield _at(line_no, validate(_remap_event(row, mapping), known_types, names=names))


# --- Segment ------------------------------------------------------------------------------

SEGMENT_EVENT_TYPES: Mapping[str, str] = {
    "Product Viewed": "view",
    "Product Clicked": "click",
    "Product Added": "add_to_cart",
    "Order Completed": "purchase",
}
"""Segment ecommerce-spec event names → our types. Unlisted names are passed through and
accepted when they match a configured custom type (case-insensitively)."""

_SEGMENT_NAMES: Names = {
    "type": "event",
    "user_id": "userId",
    "event_id": "messageId",
    "timestamp": "timestamp",
    "query": "properties.query",
    "query_id": "properties.query_id",
    "session_id": "properties.session_id",
    "context": "context",
}
_SEGMENT_PRODUCT_NAMES: Names = {
    "item_id": "product_id",
    "value": "price",
    "quantity": "quantity",
    "position": "position",
}


def _path(doc: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def _segment_context(doc: Raw) -> dict[str, object]:
    found = {
        "device": _path(doc, "context", "device", "type"),
        "geo": _path(doc, "context", "location", "country"),
        "referrer": _path(doc, "context", "page", "referrer"),
        "campaign": _path(doc, "context", "campaign", "name"),
    }
    return {k: v for k, v in found.items() if v is not None}


def _segment_event(doc: Raw, props: Raw, product: Raw, etype: object) -> dict[str, object]:
    return {
        "event_id": doc.get("messageId"),
        "user_id": doc.get("userId") or doc.get("anonymousId"),
        "type": etype,
        "item_id": product.get("product_id") or product.get("sku"),
        "timestamp": doc.get("timestamp") or doc.get("originalTimestamp"),
        "value": product.get("price"),
        "quantity": product.get("quantity"),
        "position": product.get("position"),
        "query": props.get("query"),
        "query_id": props.get("query_id"),
        "session_id": props.get("session_id"),
        "context": _segment_context(doc),
        "attributes": {"brand": product.get("brand"), "category": product.get("category")},
    }


def _segment_names(prefix: str) -> dict[str, str]:
    """Rejections name Segment paths: `properties.product_id`, `properties.products[2].price`."""
    product = {k: f"{prefix}.{v}" for k, v in _SEGMENT_PRODUCT_NAMES.items()}
    return {**_SEGMENT_NAMES, **product, "attributes": prefix}


def segment_raw_events(
    doc: Raw, event_map: Mapping[str, str] = SEGMENT_EVENT_TYPES
) -> list[tuple[dict[str, object], Names]] | Rejection:
    """One Segment call → canonical raw events with the Segment spelling of each field.

    An order with a `products` list yields one purchase per product, with event ids
    `{messageId}:{index}` so that redelivering the order stays idempotent.
    """
    if doc.get("type") != "track":
        reason = f"type is {doc.get('type')!r}; only Segment track calls describe events"
        return Rejection("type", reason)
    name = doc.get("event")
    etype = event_map.get(name, name) if isinstance(name, str) else name
    found = doc.get("properties")
    props: Raw = found if isinstance(found, Mapping) else {}
    products = props.get("products")
    if not isinstance(products, list) or not products:
        return [(_segment_event(doc, props, props, etype), _segment_names("properties"))]
    out: list[tuple[dict[str, object], Names]] = []
    for index, product in enumerate(products):
        raw = _segment_event(doc, props, product if isinstance(product, Mapping) else {}, etype)
        raw["event_id"] = f"{raw['event_id']}:{index}" if raw["event_id"] else None
        out.append((raw, _segment_names(f"properties.products[{index}]")))
    return out


def parse_segment(
    lines: Iterable[str],
    known_types: Collection[str] = DEFAULT_EVENT_TYPES,
    event_map: Mapping[str, str] = SEGMENT_EVENT_TYPES,
) -> Parsed:
    """Segment `track` calls, one JSON object per line; an order yields one event per product."""
    for line_no, doc in _json_lines(lines):
        found = doc if isinstance(doc, Rejection) else segment_raw_events(doc, event_map)
        if isinstance(found, Rejection):
            yield _at(line_no, found)
            continue
        for raw, names in found:
            yield _at(line_no, validate(raw, known_types, names=names))


# --- OpenSearch User Behavior Insights ----------------------------------------------------

_UBI_NAMES: Names = {
    "type": "action_name",
    "user_id": "client_id",
    "event_id": "message_id",
    "item_id": "event_attributes.object.object_id",
    "position": "event_attributes.position.ordinal",
}


def _ubi_names(doc: Raw) -> Names:
    src = _ubi_source(doc)
    names = dict(_UBI_NAMES)
    if src.get("user_id") is not None:
        names["user_id"] = "user_id"
    if src.get("object_id") is not None:
        names["item_id"] = "object_id"
    return names


def _ubi_source(doc: Raw) -> Raw:
    source = doc.get("_source")
    return source if isinstance(source, Mapping) else doc


def ubi_raw_event(doc: Raw, action_map: Mapping[str, str] | None = None) -> dict[str, object]:
    """One `ubi_events` document (bare or as a search hit with `_source`) → a raw event.

    `action_name` is used as our type unless `action_map` renames it (UBI leaves action names
    to the application: "click", "add_to_cart", "purchase", …).
    """
    src = _ubi_source(doc)
    action = src.get("action_name")
    attrs = src.get("event_attributes")
    return {
        "event_id": src.get("message_id"),
        "user_id": src.get("user_id") or src.get("client_id"),
        "type": (action_map or {}).get(action, action) if isinstance(action, str) else action,
        "item_id": src.get("object_id") or _path(attrs, "object", "object_id"),
        "timestamp": src.get("timestamp"),
        "query_id": src.get("query_id"),
        "session_id": src.get("session_id") or _path(attrs, "session_id"),
        "position": _path(attrs, "position", "ordinal"),
    }


def parse_ubi(
    lines: Iterable[str],
    known_types: Collection[str] = DEFAULT_EVENT_TYPES,
    action_map: Mapping[str, str] | None = None,
) -> Parsed:
    """UBI `ubi_events` documents, one JSON object per line (e.g. an index export)."""
    for line_no, doc in _json_lines(lines):
        if isinstance(doc, Rejection):
            yield line_no, doc
            continue
        raw = ubi_raw_event(doc, action_map)
        yield _at(line_no, validate(raw, known_types, names=_ubi_names(doc)))


def _remap_catalog(doc: Raw, mapping: FieldMapping) -> dict[str, object]:
    raw = {t: doc[mapping.source(t)] for t in CATALOG_FIELDS if mapping.source(t) in doc}
    raw.update({f: doc[f] for f in mapping.facets if f in doc})
    return raw


def _catalog_names(mapping: FieldMapping) -> dict[str, str]:
    _check_targets(mapping, CATALOG_FIELDS, ())
    return dict(mapping.fields)


CatalogParsed = Iterator[tuple[int, CatalogRecord | Rejection]]


def _catalog_at(
    line_no: int, doc: Raw, mapping: FieldMapping, names: Names
) -> tuple[int, CatalogRecord | Rejection]:
    raw = _remap_catalog(doc, mapping)
    result = validate_catalog(raw, names=names, separator=mapping.separator, facets=mapping.facets)
    return line_no, replace(result, line=line_no) if isinstance(result, Rejection) else result


def parse_catalog_jsonl(lines: Iterable[str], mapping: FieldMapping | None = None) -> CatalogParsed:
    """Catalog records, one JSON object per line, keys renamed by `mapping`."""
    mapping = mapping or FieldMapping()
    names = _catalog_names(mapping)
    for line_no, doc in _json_lines(lines):
        if isinstance(doc, Rejection):
            yield line_no, doc
        else:
            yield _catalog_at(line_no, doc, mapping, names)


def parse_catalog_csv(lines: Iterable[str], mapping: FieldMapping | None = None) -> CatalogParsed:
    """Catalog records from CSV (open with newline=""); multi-valued cells split on separator."""
    mapping = mapping or FieldMapping()
    names = _catalog_names(mapping)
    needed = [*mapping.fields.values(), *mapping.facets]
    for line_no, row in _csv_rows(lines, needed):
        if isinstance(row, Rejection):
            yield line_no, row
        else:
            yield _catalog_at(line_no, row, mapping, names)


# --- MovieLens ----------------------------------------------------------------------------

_TITLE_YEAR = re.compile(r"\((\d{4})(?:\s*[–-]\s*\d{4})?\)\s*$")
_NO_GENRES = "(no genres listed)"


def movielens_movie(row: Mapping[str, str]) -> CatalogRecord | Rejection:
    """A movies.csv row (movieId, title, genres) → a catalog record.

    category = genres (split on "|", none for "(no genres listed)"); created_at = 1 January of
    the year in the title, when there is one; no brand.
    """
    title = (row.get("title") or "").strip()
    year = _TITLE_YEAR.search(title)
    genres = (row.get("genres") or "").strip()
    raw = {
        "id": row.get("movieId"),
        "title": title,
        "category": [] if genres in ("", _NO_GENRES) else genres.split("|"),
        "created_at": f"{year.group(1)}-01-01T00:00:00Z" if year else None,
    }
    return validate_catalog(raw, names={"id": "movieId", "category": "genres"})


def movielens_rating(row: Mapping[str, str]) -> Event | Rejection:
    """A ratings.csv row (userId, movieId, rating, timestamp) → a rating_high/rating_low event.

    rating ≥ 4 is `rating_high`, below is `rating_low`; value = rating; the id
    `ml-{userId}-{movieId}-{timestamp}` makes re-imports idempotent.
    """
    try:
        rating = _number(row.get("rating"), "rating")
    except _Invalid as bad:
        return Rejection(bad.name, bad.reason)
    if rating is None:
        return Rejection("rating", "rating is missing; MovieLens ratings are 0.5 to 5.0")
    user, movie, stamp = row.get("userId"), row.get("movieId"), row.get("timestamp")
    raw = {
        "event_id": f"ml-{user}-{movie}-{stamp}",
        "user_id": user,
        "item_id": movie,
        "type": "rating_high" if rating >= 4 else "rating_low",
        "timestamp": stamp,
        "value": rating,
    }
    names = {"user_id": "userId", "item_id": "movieId"}
    return validate(raw, MOVIELENS_EVENT_TYPES, names=names)


_Out = TypeVar("_Out", Event, CatalogRecord)


def _parse_rows(
    lines: Iterable[str], convert: Callable[[Mapping[str, str]], _Out | Rejection]
) -> Iterator[tuple[int, _Out | Rejection]]:
    for line_no, row in _csv_rows(lines, ()):
        if isinstance(row, Rejection):
            yield line_no, row
            continue
        result = convert({k: str(v) for k, v in row.items()})
        yield line_no, replace(result, line=line_no) if isinstance(result, Rejection) else result


def parse_movielens_movies(lines: Iterable[str]) -> CatalogParsed:
    """movies.csv → catalog records (open with newline="")."""
    return _parse_rows(lines, movielens_movie)


def parse_movielens_ratings(lines: Iterable[str]) -> Parsed:
    """ratings.csv → rating events (open with newline="")."""
    return _parse_rows(lines, movielens_rating)
