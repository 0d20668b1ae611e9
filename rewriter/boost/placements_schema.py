"""Parser for the `placements:` section of profiles/*.yaml (boost/placements.py says what it
means; profiles/retail.yaml documents every key with examples).

`placements:` maps slot names to lists of placements. Problems are reported like the rest of
the file (file:line:column, closest valid key); segment names are checked against the file's
`segments:` afterwards, as for rules. Content and variants are JSON objects, kept verbatim
(dates as ISO text), at most MAX_CONTENT_BYTES each once encoded.
"""

from __future__ import annotations

import datetime as dt
import json

from yaml.nodes import MappingNode, Node

from rewriter.boost import yaml_fields as y
from rewriter.boost.placements import Placement, Slot
from rewriter.boost.rules_schema import _query, _schedule, _segment_names
from rewriter.boost.segments_schema import ID, ID_HELP

MAX_CAP_PER_DAY = 1000
MAX_PRIORITY = 1_000_000
MAX_CONTENT_BYTES = 16_384


def parse_placements(node: Node, ctx: y.Ctx) -> tuple[Slot, ...]:
    slots: list[Slot] = []
    seen: dict[str, int] = {}
    for name, key_node, value in y.pairs(node, ctx, "placements"):
        where = y.at(ctx, name)
        if not ID.match(name):
            ctx.errors.append(y.error_at(where, key_node, f"slot name {name!r}: {ID_HELP}"))
            continue
        placements = y.unique_items(value, where, f"slot {name}", "placement", _placement, seen)
        slots.append(Slot(name, tuple(placements)))
    return tuple(slots)


def _placement(node: Node, ctx: y.Ctx) -> Placement:
    before = len(ctx.errors)
    values = y.section(node, ctx, _PLACEMENT, "a placement")
    if "segment" in values and "segments" in values:
        y.fail(ctx, node, "give either `segment` or `segments`, not both")
    y.check(ctx, before)
    for key, help_text in (("id", "a short unique name"), ("content", "what the slot shows")):
        if key not in values:
            y.fail(ctx, node, f"missing required key {key!r} ({help_text})")
    variants = values.get("variants")
    if variants and "experiment" not in values:
        y.fail(ctx, node, "variants need `experiment: NAME` (the experiment they belong to)")
    values["segments"] = values.pop("segment", None) or values.pop("segments", ())
    return Placement(**values)  # type: ignore[arg-type]


def _placement_id(node: Node, ctx: y.Ctx) -> str:
    value = y.text(node, ctx)
    if not ID.match(value):
        y.fail(ctx, node, f"placement id {value!r}: {ID_HELP}")
    return value


def _content(node: Node, ctx: y.Ctx) -> dict[str, object]:
    if not isinstance(node, MappingNode):
        y.fail(ctx, node, "content must be a mapping (title, text, image, link, offer_code, ...)")
    value = y.plain(node, ctx)
    try:
        encoded = json.dumps(value, default=_iso)
    except (TypeError, ValueError) as exc:
        y.fail(ctx, node, f"content must be JSON data: {exc}")
    if len(encoded.encode()) > MAX_CONTENT_BYTES:
        y.fail(ctx, node, f"content is over {MAX_CONTENT_BYTES} bytes once encoded as JSON")
    return json.loads(encoded)


def _iso(value: object) -> str:
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _variants(node: Node, ctx: y.Ctx) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, key_node, value in y.pairs(node, ctx, "variants"):
        if not ID.match(name):
            y.fail(y.at(ctx, name), key_node, f"variant name {name!r}: {ID_HELP}")
        out[name] = _content(value, y.at(ctx, name))
    if not out:
        y.fail(ctx, node, "give at least one variant: name: {content fields}")
    return out


_PLACEMENT: dict[str, y.Parser] = {
    "id": _placement_id,
    "content": _content,
    "segment": _segment_names,
    "segments": _segment_names,
    "query": _query,
    "device": lambda n, c: y.texts(n, c),
    "geo": lambda n, c: y.texts(n, c),
    "schedule": _schedule,
    "priority": y.int_between(-MAX_PRIORITY, MAX_PRIORITY),
    "cap_per_day": y.int_between(1, MAX_CAP_PER_DAY),
    "experiment": y.text,
    "variants": _variants,
    "enabled": y.boolean,
}

PLACEMENT_KEYS: tuple[str, ...] = tuple(_PLACEMENT)
