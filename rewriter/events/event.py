"""Events and catalog records: the typed shapes and their validation. Pure: no I/O.

`validate` turns one raw event (a dict with our field names) into an `Event` or a
`Rejection`; `validate_catalog` does the same for catalog records. A `Rejection` names the
field (as the *caller* spells it: a CSV column, a Segment property path, via `names`) and says
in one sentence what is wrong and what to send. The import parsers (JSONL, CSV with a field
mapping, Segment, UBI, MovieLens) live in events/formats.py and call these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from rewriter.events.facet_select import FACET_SELECT, facet_item_id, facet_problem
from rewriter.events.fields import (
    INTEGER_MAX,
    MAX_EVENT_TIME,
    MAX_TEXT_CHARS,
    MIN_EVENT_TIME,
    Names,
    Raw,
    Rejection,
    _flag,
    _id_bytes,
    _integer,
    _Invalid,
    _number,
    _required_text,
    _text,
    _time,
    _values,
)

DEFAULT_EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase")
TRACKING_EVENT_TYPES: tuple[str, ...] = ("impression", "click")
"""Accepted by POST /events whatever the event weights say: a carousel or placement was shown
or clicked (with `recommendation_id` or `decision_id`). Unweighted types add no affinity."""
TRACKING_ID_FIELDS: tuple[str, ...] = ("decision_id", "recommendation_id")
"""Stored as the event's `query_id` when it has none: the id of the placement decision
(serve/placements.py) or carousel (serve/recommend.py) the event came from."""


CONTEXT_KEYS: tuple[str, ...] = ("device", "geo", "referrer", "campaign")


MAX_FUTURE_SKEW_S = 86_400.0


"""With `now` given, events more than a day ahead are refused: forward decay weighs the
future exponentially, so one bad clock could dominate a profile."""


MAX_CONTEXT_KEYS = 32


MAX_CONTEXT_KEY_CHARS = 256


MAX_POSITION = INTEGER_MAX


MAX_QUANTITY = 1_000_000


MAX_VALUE = 1e12


"""A purchase's `value` (per unit) and `quantity` are bounded far above any real order, so
value × quantity (≤ 1e18) and its sums stay finite: 1e308 × 10 was inf, which JSON stores
as null, and that profile then failed every fold and every search of its user."""


@dataclass(frozen=True)
class Event:
    """One validated user action on one item.

    `user_id` is the raw id after validation; `with_user` swaps in the pseudonym before the
    event is stored. `attributes` holds the item's attribute values captured at event time
    (`{"brand": ("acme",), "category": ("shoes", "sale")}`), attached from the catalog by the
    ingest path (`catalog.item_attributes`); profiles fold exactly these, never today's
    catalog. Attributes a client sends are not folded unless a boost profile allows them for
    the event's source and the item is not in the catalog (`client_attributes`).
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
        moved = _evolve(self, user_id=user_id)
        if self.event_id_generated:
            return _evolve(moved, event_id=content_event_id(moved))
        return moved

    def with_attributes(self, attributes: Mapping[str, tuple[str, ...]]) -> Event:
        """This event carrying the item's attribute values (captured at ingest)."""
        return _evolve(self, attributes=attributes)

    def to_doc(self) -> dict[str, object]:
        """The events-index document (doc id = `event_id`); `validate` reads it back.

        Every set field (no None, False or empty mapping), in one pass over the fields: it
        runs once per imported event."""
        doc: dict[str, object] = {
            k: v
            for k, v in self.__dict__.items()
            if v is not None and v is not False and v != _UNSET
        }
        if "context" in doc:
            doc["context"] = dict(self.context)
        if "attributes" in doc:
            doc["attributes"] = {a: list(v) for a, v in self.attributes.items()}
        return doc


_UNSET: dict[str, object] = {}


def _evolve(event: Event, **changes: object) -> Event:
    """`dataclasses.replace` without re-running `__init__` (~10x faster; every imported event
    is copied twice). Only for values already validated: Event has no `__post_init__`."""
    new = object.__new__(Event)
    new.__dict__.update(event.__dict__)
    new.__dict__.update(changes)
    return new


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


def _event_time(value: object, name: str, now: float | None) -> float:
    high = MAX_EVENT_TIME if now is None else min(MAX_EVENT_TIME, now + MAX_FUTURE_SKEW_S)
    return _time(value, name, MIN_EVENT_TIME, high)


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
    bad = next((k for k in value if not _context_key(str(k))), None)
    if bad is not None:  # the engine refuses the document: "" and dots make field paths
        raise _Invalid(
            name,
            f"{name} key {bad!r} is not usable: keys must be non-empty names without dots, "
            f"of at most {MAX_CONTEXT_KEY_CHARS} characters (device, geo, referrer, campaign)",
        )
    out = {str(k): _text(v, f"{name}.{k}", MAX_TEXT_CHARS) for k, v in value.items()}
    return {k: v for k, v in out.items() if v is not None}


def _context_key(key: str) -> bool:
    return bool(key.strip()) and "." not in key and len(key) <= MAX_CONTEXT_KEY_CHARS


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


EVENT_FIELD_NAMES: tuple[str, ...] = (
    "event_id", "event_id_generated", "user_id", "type", "item_id", "timestamp", "query",
    "query_id", "position", "value", "price", "quantity", "session_id", "context",
    "experiment", "variant", "opt_out", "attributes", "facet",
)  # fmt: skip


_SAME_NAMES: dict[str, str] = {f: f for f in EVENT_FIELD_NAMES}


_names_memo: tuple[Names | None, dict[str, str]] = (None, _SAME_NAMES)


def _all_names(names: Names) -> dict[str, str]:
    """Every field's caller-facing name (one dict lookup per field instead of a call)."""
    global _names_memo
    if not names:
        return _SAME_NAMES
    memo_key, memo = _names_memo
    if memo_key is names:
        return memo
    full = {**_SAME_NAMES, **names}
    _names_memo = (names, full)
    return full


def _event(raw: Raw, known: Collection[str], names: Names, now: float | None) -> Event:
    """Written for speed (it runs once per imported event): absent optional fields cost one
    dict lookup, and the Event is built without the frozen dataclass's __init__."""
    get = raw.get
    n = _all_names(names)
    if get("facet") is not None and get("type") == FACET_SELECT:
        raw = _facet_select(raw, n["facet"])  # events/facet_select.py
        get = raw.get
    fields: dict[str, object] = {
        "user_id": _required_text(
            get("user_id"), n["user_id"], "every event needs the user who acted"
        ),
        "type": _event_type(get("type"), n["type"], known),
        "item_id": _id_bytes(
            _required_text(get("item_id"), n["item_id"], "every event needs the item acted on"),
            n["item_id"],
        ),
        "timestamp": _event_time(get("timestamp"), n["timestamp"], now),
        "event_id_generated": False,
        "query": None,
        "query_id": None,
        "position": None,
        "value": None,
        "quantity": None,
        "session_id": None,
        "context": {},
        "experiment": None,
        "variant": None,
        "opt_out": False,
        "attributes": {},
    }
    for key in ("query_id", "session_id", "experiment", "variant"):
        if (value := get(key)) is not None:
            fields[key] = _text(value, n[key])
    for key in TRACKING_ID_FIELDS:  # a carousel's or a placement's id joins as a search's does
        if fields["query_id"] is None and (value := get(key)) is not None:
            fields["query_id"] = _text(value, key)
    if (value := get("query")) is not None:
        fields["query"] = _text(value, n["query"], MAX_TEXT_CHARS)
    if (value := get("position")) is not None:
        fields["position"] = _integer(value, n["position"], 0, MAX_POSITION)
    if (value := get("quantity")) is not None:
        fields["quantity"] = _integer(value, n["quantity"], 1, MAX_QUANTITY)
    value_key = "value" if get("value") not in (None, "") else "price"
    if (value := get(value_key)) is not None:
        fields["value"] = _number(value, n[value_key], MAX_VALUE)
    if (value := get("context")) is not None:
        fields["context"] = _context(value, n["context"])
    if (value := get("opt_out")) is not None:
        fields["opt_out"] = _flag(value, n["opt_out"])
    if (value := get("attributes")) is not None:
        fields["attributes"] = _attributes(value, n["attributes"])
    given = _text(get("event_id"), n["event_id"])
    if given is not None:
        fields["event_id"] = _id_bytes(given, n["event_id"])
        if (value := get("event_id_generated")) is not None:
            fields["event_id_generated"] = _flag(value, n["event_id_generated"])
        return _new_event(fields)
    fields["event_id"] = ""
    event = _new_event(fields)
    return _evolve(event, event_id=content_event_id(event), event_id_generated=True)


def _facet_select(raw: Raw, name: str) -> Raw:
    """A facet_select event's facet as its item id and attributes."""
    facet = raw["facet"]
    problem = facet_problem(facet, name)
    if problem is not None:
        raise _Invalid(name, problem)
    attribute, value = facet["attribute"], facet["value"]
    return {**raw, "item_id": facet_item_id(attribute, value), "attributes": {attribute: [value]}}


def _new_event(fields: dict[str, object]) -> Event:
    """An Event from every one of its fields, already validated (see `_evolve`)."""
    new = object.__new__(Event)
    new.__dict__.update(fields)
    return new
