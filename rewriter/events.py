"""Events and catalog records: the typed shapes, their validation, and import parsers.

Everything here is pure: parsers take an iterable of text lines (an open file, a list) and
yield `(line_no, Event | Rejection)` pairs, so the CLI can count, print and continue instead of
stopping at the first bad row. A `Rejection` names the field (as the *caller* spells it: a CSV
column, a Segment property path) and says in one sentence what is wrong and what to send.

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
import hashlib
import json
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import yaml

DEFAULT_EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
MOVIELENS_EVENT_TYPES: tuple[str, ...] = ("rating_high", "rating_low")
CONTEXT_KEYS: tuple[str, ...] = ("device", "geo", "referrer", "campaign")

MIN_EVENT_TIME = 631_152_000.0  # 1990-01-01T00:00:00Z: nothing affinity sees is older.
MAX_EVENT_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z
MIN_CATALOG_TIME = -5_364_662_400.0  # 1800-01-01: catalogs hold old films and books.
MAX_FUTURE_SKEW_S = 86_400.0
"""With `now` given, events more than a day ahead are refused: forward decay weighs the
future exponentially, so one bad clock could dominate a profile."""

EPOCH_MS_THRESHOLD = 1e11
"""Numbers at least this large are epoch milliseconds (1e11 s is the year 5138)."""

MAX_ID_CHARS = 512
MAX_TEXT_CHARS = 2048
MAX_VALUES_PER_ATTRIBUTE = 100
MAX_CONTEXT_KEYS = 32

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Raw = Mapping[str, object]
Names = Mapping[str, str]


@dataclass(frozen=True)
class Rejection:
    """Why one input record was refused. `reason` is a sentence that starts with the field."""

    field: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        return self.reason if self.line is None else f"line {self.line}: {self.reason}"


@dataclass(frozen=True)
class Event:
    """One validated user action on one item.

    `user_id` is the raw id after validation; `with_user` swaps in the pseudonym before the
    event is stored. `attributes` holds the item's attribute values captured at event time
    (`{"brand": ("acme",), "category": ("shoes", "sale")}`), attached from the catalog by the
    ingest path (`with_item_attributes`); profiles fold exactly these, never today's catalog.
    Mapping fields are plain dicts: treat them as read-only (they do not take part in hash).
    """

    event_id: str
    user_id: str
    type: str
    item_id: str
    timestamp: float
    event_id_generated: bool = False
    query: str | None = None
    query_id: str | None = None
    position: int | None = None
    value: float | None = None
    quantity: int | None = None
    session_id: str | None = None
    context: Mapping[str, str] = field(default_factory=dict, hash=False)
    experiment: str | None = None
    variant: str | None = None
    opt_out: bool = False
    attributes: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def with_user(self, user_id: str) -> Event:
        """This event for `user_id` (the pseudonym); a generated id is regenerated from it,
        so no stored id is a hash of the raw user id."""
        moved = replace(self, user_id=user_id)
        if self.event_id_generated:
            return replace(moved, event_id=content_event_id(moved))
        return moved

    def to_doc(self) -> dict[str, object]:
        """The events-index document (doc id = `event_id`); `validate` reads it back."""
        doc: dict[str, object] = {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "type": self.type,
            "item_id": self.item_id,
            "timestamp": self.timestamp,
        }
        optional: dict[str, object] = {
            "event_id_generated": self.event_id_generated or None,
            "query": self.query,
            "query_id": self.query_id,
            "position": self.position,
            "value": self.value,
            "quantity": self.quantity,
            "session_id": self.session_id,
            "context": dict(self.context) or None,
            "experiment": self.experiment,
            "variant": self.variant,
            "opt_out": self.opt_out or None,
            "attributes": {a: list(v) for a, v in self.attributes.items()} or None,
        }
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc


def content_event_id(event: Event) -> str:
    """A deterministic id for an event sent without one: "gen-" + sha256 of its content.

    The content is what identifies a delivery (user, type, item, time, query, query_id,
    position, value, quantity, session); attributes, context and experiment are enrichment and
    left out so that enriching an event never changes its id. Two identical events without ids
    are, by design, one event delivered twice; applications that can do the same thing twice
    in the same instant must send their own `event_id`.
    """
    content = [
        event.user_id,
        event.type,
        event.item_id,
        event.timestamp,
        event.query,
        event.query_id,
        event.position,
        event.value,
        event.quantity,
        event.session_id,
    ]
    payload = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return "gen-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


class _Invalid(Exception):
    """Raised inside validation; turned into a Rejection at the public boundary."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


# --- scalar coercion (each names the field in its message) ----------------------------------


def _text(value: object, name: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(name, f"{name} must be a string, got {type(value).__name__} {value!r}")
    text = str(value).strip()
    if len(text) > max_chars:
        raise _Invalid(name, f"{name} is {len(text)} characters long; the limit is {max_chars}")
    return text or None


def _required_text(value: object, name: str, need: str) -> str:
    text = _text(value, name)
    if text is None:
        raise _Invalid(name, f"{name} is missing or empty; {need}")
    return text


def _number(value: object, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(name, f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise _Invalid(name, f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise _Invalid(name, f"{name} must be a finite number ≥ 0, got {value!r}")
    return number


def _integer(value: object, name: str, minimum: int) -> int | None:
    number = _number(value, name)
    if number is None:
        return None
    if number != int(number) or number < minimum:
        raise _Invalid(name, f"{name} must be a whole number ≥ {minimum}, got {value!r}")
    return int(number)


_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n", ""}


def _flag(value: object, name: str) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int | str) and str(value).strip().lower() in _TRUE | _FALSE:
        return str(value).strip().lower() in _TRUE
    raise _Invalid(name, f"{name} must be true or false, got {value!r}")


# --- timestamps ---------------------------------------------------------------------------


def parse_timestamp(value: object) -> float:
    """ISO 8601 text or epoch seconds/milliseconds (number or numeric text) → epoch seconds.

    ISO text without a zone is taken as UTC. Raises ValueError with a description of the
    problem (without the field name; callers add it).
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"is {value!r}, not ISO 8601 text or epoch seconds/milliseconds")
    if isinstance(value, str):
        text = value.strip()
        try:
            return _from_epoch(float(text))
        except ValueError:
            pass
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"is {value!r}, not ISO 8601 (e.g. 2024-05-01T12:00:00Z) "
                "or epoch seconds/milliseconds"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    return _from_epoch(float(value))


def _from_epoch(number: float) -> float:
    if not math.isfinite(number):
        raise ValueError(f"is {number!r}, not a finite time")
    return number / 1000.0 if abs(number) >= EPOCH_MS_THRESHOLD else number


def iso(epoch_s: float) -> str:
    """Epoch seconds → ISO 8601 UTC text (for messages and documents)."""
    try:
        moment = _EPOCH + timedelta(seconds=epoch_s)
    except OverflowError:
        return f"{epoch_s:.0f} s after 1970"
    return moment.isoformat().replace("+00:00", "Z")


def _time(value: object, name: str, low: float, high: float) -> float:
    if value is None or value == "":
        raise _Invalid(name, f"{name} is missing; send ISO 8601 text or epoch seconds")
    try:
        epoch = parse_timestamp(value)
    except ValueError as err:
        raise _Invalid(name, f"{name} {err}") from None
    if not low <= epoch < high:
        raise _Invalid(
            name,
            f"{name} {value!r} means {iso(epoch)}, outside {iso(low)} … {iso(high)}; "
            "check the unit (seconds vs milliseconds) and the clock",
        )
    return epoch


def _event_time(value: object, name: str, now: float | None) -> float:
    high = MAX_EVENT_TIME if now is None else min(MAX_EVENT_TIME, now + MAX_FUTURE_SKEW_S)
    return _time(value, name, MIN_EVENT_TIME, high)


# --- structured fields --------------------------------------------------------------------


def _values(value: object, name: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str | int) and not isinstance(value, bool) else value
    if not isinstance(items, list | tuple):
        raise _Invalid(name, f"{name} must be a string or a list of strings, got {value!r}")
    out: dict[str, None] = {}
    for item in items:
        text = _text(item, name)
        if text is not None:
            out[text] = None
    if len(out) > MAX_VALUES_PER_ATTRIBUTE:
        raise _Invalid(name, f"{name} has {len(out)} values; the limit is 100")
    return tuple(out)


def _attributes(value: object, name: str) -> dict[str, tuple[str, ...]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _Invalid(name, f"{name} must be an object of attribute → values, got {value!r}")
    out = {str(k): _values(v, f"{name}.{k}") for k, v in value.items() if v is not None}
    return {k: v for k, v in out.items() if v}


def _context(value: object, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or len(value) > MAX_CONTEXT_KEYS:
        raise _Invalid(name, f"{name} must be an object of at most 32 keys, got {value!r}")
    out = {str(k): _text(v, f"{name}.{k}", MAX_TEXT_CHARS) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not None}


def _event_type(value: object, name: str, known: Collection[str]) -> str:
    text = _required_text(value, name, "every event needs a type")
    if text in known:
        return text
    folded = {k.casefold(): k for k in known}
    if text.casefold() in folded:
        return folded[text.casefold()]
    raise _Invalid(
        name,
        f"{name} {text!r} is not a known event type ({', '.join(sorted(known))}); "
        "add it to the configured event weights or map it to one of these",
    )


# --- events -------------------------------------------------------------------------------


def validate(
    raw: Raw,
    known_types: Collection[str] = DEFAULT_EVENT_TYPES,
    *,
    names: Names | None = None,
    now: float | None = None,
) -> Event | Rejection:
    """Check one raw event (canonical field names) and return an Event or a Rejection.

    known_types: accepted `type` values; pass the configured event-weight mapping to accept
        custom types. Matching is exact, then case-insensitive.
    names: how the caller spells our fields (`{"item_id": "properties.product_id"}`), so a
        rejection names the column or path the user actually sent.
    now: if given, events more than a day in the future are refused.
    `price` is read as `value` when `value` is absent. Unknown keys are ignored (trackers add
    their own), never guessed at. A missing `event_id` is generated (`content_event_id`).
    """
    try:
        return _event(raw, known_types, names or {}, now)
    except _Invalid as bad:
        return Rejection(bad.name, bad.reason)


def _event(raw: Raw, known: Collection[str], names: Names, now: float | None) -> Event:
    def n(key: str) -> str:
        return names.get(key, key)

    value_key = "value" if raw.get("value") not in (None, "") else "price"
    event = Event(
        event_id="",
        user_id=_required_text(
            raw.get("user_id"), n("user_id"), "every event needs the user who acted"
        ),
        type=_event_type(raw.get("type"), n("type"), known),
        item_id=_required_text(
            raw.get("item_id"), n("item_id"), "every event needs the item acted on"
        ),
        timestamp=_event_time(raw.get("timestamp"), n("timestamp"), now),
        query=_text(raw.get("query"), n("query"), MAX_TEXT_CHARS),
        query_id=_text(raw.get("query_id"), n("query_id")),
        position=_integer(raw.get("position"), n("position"), 0),
        value=_number(raw.get(value_key), n(value_key)),
        quantity=_integer(raw.get("quantity"), n("quantity"), 1),
        session_id=_text(raw.get("session_id"), n("session_id")),
        context=_context(raw.get("context"), n("context")),
        experiment=_text(raw.get("experiment"), n("experiment")),
        variant=_text(raw.get("variant"), n("variant")),
        opt_out=_flag(raw.get("opt_out"), n("opt_out")),
        attributes=_attributes(raw.get("attributes"), n("attributes")),
    )
    given = _text(raw.get("event_id"), n("event_id"))
    if given is not None:
        generated = _flag(raw.get("event_id_generated"), n("event_id_generated"))
        return replace(event, event_id=given, event_id_generated=generated)
    return replace(event, event_id=content_event_id(event), event_id_generated=True)


def with_item_attributes(
    event: Event, record: CatalogRecord, attributes: Collection[str] | None = None
) -> Event:
    """`event` carrying `record`'s current attribute values (all, or only `attributes`)."""
    values = record.attributes()
    keep = {a: v for a, v in values.items() if attributes is None or a in attributes}
    return replace(event, attributes=keep)


# --- line-oriented parsers ----------------------------------------------------------------

Parsed = Iterator[tuple[int, Event | Rejection]]


def _json_lines(lines: Iterable[str]) -> Iterator[tuple[int, Raw | Rejection]]:
    """Non-blank lines as JSON objects, with 1-based line numbers."""
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as err:
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
CATALOG_FIELDS: tuple[str, ...] = (
    "id", "title", "description", "brand", "category", "price", "created_at",
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
            id=_required_text(raw.get("id"), n("id"), "every catalog record needs an id"),
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
