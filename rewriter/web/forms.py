"""The editor's forms: a boost profile's YAML as rows of fields, and posted fields back into
YAML. Pure.

What the forms cover: alpha, k, attribute and event weights, segments with one condition
(a counter compared with a bound, or device/geo equal to a value), and rules that boost, bury or
hide items by brand, category or age (`created_within`), optionally for one segment and within
a schedule. Anything richer (pins, query terms, any/all/not, DSL filters, descriptions) is
kept as it is, shown as YAML in its row, and edited in the YAML tab. Keys the forms do not
show (shape, window, cold_start, ...) are left untouched. Comments of a file edited through
the forms are not kept: the YAML tab keeps them.

Validation is not done here: the YAML produced goes through boost/profile.py's parser, whose
messages (`alpha: expected a number, got 'abc'`) the editor shows inline by their path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

SEGMENT_FIELDS = (
    "sessions",
    "purchases",
    "lifetime_value",
    "events",
    "mass",
    "days_since_first_seen",
    "days_since_last_seen",
    "device",
    "geo",
)
TEXT_FIELDS = ("device", "geo")
OPS = ("gte", "gt", "lte", "lt", "eq")
RULE_ACTIONS = ("boost", "bury", "hide")
RULE_TARGETS = ("brand", "category", "created_within")
AMOUNT = {"boost": "weight", "bury": "factor"}
FORM_KEYS = ("alpha", "k", "attributes", "event_weights", "segments", "rules")


@dataclass
class SegmentRow:
    name: str = ""
    field: str = "sessions"
    op: str = "gte"
    value: str = ""
    alpha: str = ""
    raw: str = ""  # YAML of a segment the form cannot show


@dataclass
class RuleRow:
    id: str = ""
    action: str = "boost"
    segment: str = ""
    target: str = "brand"
    value: str = ""
    amount: str = ""
    start: str = ""
    end: str = ""
    raw: str = ""  # YAML of a rule the form cannot show


@dataclass
class Editor:
    """What the editor's form shows."""

    alpha: str = ""
    k: str = ""
    attributes: list[tuple[str, str]] = field(default_factory=list)
    event_weights: list[tuple[str, str]] = field(default_factory=list)
    segments: list[SegmentRow] = field(default_factory=list)
    rules: list[RuleRow] = field(default_factory=list)


def load(yaml_text: str) -> dict[str, Any]:
    """The YAML as a mapping ({} when it is not one: the YAML tab shows why)."""
    try:
        data = yaml.safe_load(yaml_text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def dump(data: object) -> str:
    plain = dict(data) if isinstance(data, Mapping) else data
    return yaml.safe_dump(plain, sort_keys=False, allow_unicode=True, width=100)


def _text(value: object) -> str:
    return "" if value is None else str(value)


def editor(data: Mapping[str, Any]) -> Editor:
    """The form rows of a profile's data."""
    out = Editor(alpha=_text(data.get("alpha")), k=_text(data.get("k")))
    for key, rows in (("attributes", out.attributes), ("event_weights", out.event_weights)):
        weights = data.get(key)
        if isinstance(weights, dict):
            rows += [(str(n), _text(w)) for n, w in weights.items()]
    segments = data.get("segments")
    if isinstance(segments, dict):
        out.segments = [_segment_row(str(n), s) for n, s in segments.items()]
    rules = data.get("rules")
    if isinstance(rules, list):
        out.rules = [_rule_row(r) for r in rules]
    return out


def _segment_row(name: str, spec: object) -> SegmentRow:
    if isinstance(spec, dict) and set(spec) <= {"when", "alpha"}:
        when = spec.get("when")
        if isinstance(when, dict) and len(when) == 1:
            ((fname, cond),) = when.items()
            alpha = _text(spec.get("alpha"))
            if fname in TEXT_FIELDS and isinstance(cond, str | int | float):
                return SegmentRow(name, fname, "eq", str(cond), alpha)
            if fname in SEGMENT_FIELDS and isinstance(cond, dict) and len(cond) == 1:
                ((op, value),) = cond.items()
                if op in OPS:
                    return SegmentRow(name, fname, op, _text(value), alpha)
    return SegmentRow(name, raw=dump(spec).strip())


def _rule_row(rule: object) -> RuleRow:
    raw = RuleRow(raw=dump(rule).strip())
    if not isinstance(rule, dict):
        return raw
    actions = [a for a in RULE_ACTIONS if a in rule]
    if len(actions) != 1 or not set(rule) <= {"id", "segment", "schedule", actions[0]}:
        return raw
    action = actions[0]
    spec = rule[action]
    if not isinstance(spec, dict):
        return raw
    targets = [t for t in RULE_TARGETS if t in spec]
    amount = AMOUNT.get(action)
    if len(targets) != 1 or not set(spec) <= {targets[0], *([amount] if amount else [])}:
        return raw
    schedule = rule.get("schedule") or {}
    if not isinstance(schedule, dict) or not set(schedule) <= {"start", "end"}:
        return raw
    return RuleRow(
        id=_text(rule.get("id")),
        action=action,
        segment=_text(rule.get("segment")),
        target=targets[0],
        value=_text(spec[targets[0]]),
        amount=_text(spec.get(amount)) if amount else "",
        start=_text(schedule.get("start")),
        end=_text(schedule.get("end")),
    )


# --- posted form -> data ---------------------------------------------------------------------

_NUMBER = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def scalar(text: str) -> object:
    """A posted value: a number when it reads as one, else the text (the parser then says
    what it expected)."""
    text = text.strip()
    if _NUMBER.match(text):
        number = float(text)
        return (
            int(number)
            if number.is_integer() and "." not in text and "e" not in text.lower()
            else number
        )
    return text


def _rows(form: Mapping[str, str], prefix: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    out = []
    i = 0
    while f"{prefix}_{names[0]}_{i}" in form:
        out.append({n: str(form.get(f"{prefix}_{n}_{i}", "")).strip() for n in names})
        i += 1
    return out


def apply(yaml_text: str, form: Mapping[str, str]) -> str:
    """The draft's YAML with the form's values in place of the keys the form shows."""
    data = load(yaml_text)
    posted: dict[str, Any] = {}
    for key in ("alpha", "k"):
        if str(form.get(key, "")).strip():
            posted[key] = scalar(str(form[key]))
    for key, prefix in (("attributes", "attr"), ("event_weights", "ev")):
        rows = [r for r in _rows(form, prefix, ("name", "weight")) if r["name"]]
        if rows:
            posted[key] = {r["name"]: scalar(r["weight"]) for r in rows}
    segments = _segments(_rows(form, "seg", ("name", "field", "op", "value", "alpha", "raw")))
    rules = _rules(
        _rows(
            form,
            "rule",
            ("id", "action", "segment", "target", "value", "amount", "start", "end", "raw"),
        )
    )
    merged: dict[str, Any] = {"name": data.get("name")} if "name" in data else {}
    for key, value in data.items():
        if key not in FORM_KEYS:
            merged[key] = value
    merged.update(posted)
    if segments:
        merged["segments"] = segments
    if rules:
        merged["rules"] = rules
    return dump(merged)


def _segments(rows: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in rows:
        if not r["name"]:
            continue
        if r["raw"]:
            out[r["name"]] = yaml.safe_load(r["raw"])
            continue
        if r["field"] in TEXT_FIELDS:
            when: dict[str, Any] = {r["field"]: r["value"]}
        else:
            when = {r["field"]: {r["op"]: scalar(r["value"])}}
        spec: dict[str, Any] = {"when": when}
        if r["alpha"]:
            spec["alpha"] = scalar(r["alpha"])
        out[r["name"]] = spec
    return out


def _rules(rows: list[dict[str, str]]) -> list[Any]:
    out: list[Any] = []
    for r in rows:
        if r["raw"]:
            out.append(yaml.safe_load(r["raw"]))
            continue
        if not r["id"]:
            continue
        rule: dict[str, Any] = {"id": r["id"]}
        if r["segment"]:
            rule["segment"] = r["segment"]
        if r["start"] or r["end"]:
            rule["schedule"] = {k: r[k] for k in ("start", "end") if r[k]}
        spec: dict[str, Any] = {r["target"]: r["value"]}
        amount = AMOUNT.get(r["action"])
        if amount:
            spec[amount] = scalar(r["amount"])
        rule[r["action"]] = spec
        out.append(rule)
    return out


def field_of(message: str) -> str:
    """The form field an error message is about, from its path: `alpha`, `attributes.brand`,
    `segments.returning`, `rules[0]` (the prefix the editor marks)."""
    path = message.split(":", 1)[0]
    match = re.match(
        r"^(rules\[\d+\]|segments\.[^.\s]+|attributes\.[^.\s]+|event_weights\.[^.\s]+|[a-z_]+)",
        path,
    )
    return match.group(1) if match else ""
