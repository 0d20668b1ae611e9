"""A tiny evaluator of the query DSL subset that rule filters may use, for the reference scorer.

Rules filter catalog items (boost, bury, hide). The engine runs those filters; the reference
scorer (ranking/reference.py) must decide the same matches in Python, so a filter may only use what
this module evaluates exactly, and `problems()` tells `affinity boost check` what is not:

    term, terms, range (gt/gte/lt/lte; numbers; dates as ISO strings, epoch millis, `now`
    or `now-30d` style date math in w/d/h/m/s without rounding), exists, ids, prefix,
    match_all, match_none, bool (must, filter, should, must_not, minimum_should_match as a number)

Field values come from `_source` (dotted names walk objects; lists are multi-values). Like
the engine, a term matches when any value of the field equals it; booleans match "true" /
"false"; numbers compare numerically.

Pure: `now` (epoch seconds) is passed in.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, date, datetime

Doc = Mapping[str, object]
LEAF_QUERIES = ("term", "terms", "range", "exists", "prefix", "ids", "match_all", "match_none")
BOOL_KEYS = ("must", "filter", "should", "must_not", "minimum_should_match", "boost")
RANGE_KEYS = ("gt", "gte", "lt", "lte", "format", "boost", "time_zone")
_MATH = re.compile(r"^now(?:([+-])(\d+)([wdhHms]))?$")
_UNIT_S = {"w": 7 * 86400, "d": 86400, "h": 3600, "H": 3600, "m": 60, "s": 1}
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FULL_TIME = re.compile(r"T\d{2}:\d{2}:\d{2}")
DAY_MS = 86_400_000.0


def matches(query: Mapping[str, object], doc: Doc, doc_id: str, now: float) -> bool:
    """Whether the item (its `_source` and `_id`) matches the filter at time `now`."""
    [(kind, spec)] = query.items()
    if kind == "bool":
        return _bool(spec, doc, doc_id, now)  # type: ignore[arg-type]
    if kind == "match_all":
        return True
    if kind == "match_none":
        return False
    if kind == "ids":
        return doc_id in [str(v) for v in spec["values"]]  # type: ignore[index]
    if kind == "exists":
        return bool(values(doc, str(spec["field"])))  # type: ignore[index]
    name, arg = _field_arg(spec)  # type: ignore[arg-type]
    found = values(doc, name)
    if kind == "term":
        return any(_equal(v, _unwrap(arg)) for v in found)
    if kind == "terms":
        return any(_equal(v, t) for v in found for t in arg)  # type: ignore[union-attr]
    if kind == "prefix":
        return any(isinstance(v, str) and v.startswith(str(_unwrap(arg))) for v in found)
    if kind == "range":
        return any(_in_range(v, arg, now) for v in found)  # type: ignore[arg-type]
    raise ValueError(f"unsupported filter {kind!r}; supported: {', '.join(LEAF_QUERIES)}, bool")


def _bool(spec: Mapping[str, object], doc: Doc, doc_id: str, now: float) -> bool:
    def clauses(key: str) -> list[Mapping[str, object]]:
        got = spec.get(key, [])
        return got if isinstance(got, list) else [got]  # type: ignore[list-item,return-value]

    if not all(matches(c, doc, doc_id, now) for c in clauses("must") + clauses("filter")):
        return False
    if any(matches(c, doc, doc_id, now) for c in clauses("must_not")):
        return False
    should = clauses("should")
    default = 1 if should and not (clauses("must") or clauses("filter")) else 0
    needed = int(spec.get("minimum_should_match", default))  # type: ignore[call-overload]
    return sum(matches(c, doc, doc_id, now) for c in should) >= needed


def _field_arg(spec: Mapping[str, object]) -> tuple[str, object]:
    named = [(k, v) for k, v in spec.items() if k not in ("boost", "_name")]
    [(name, arg)] = named
    return name, arg


def _unwrap(arg: object) -> object:
    return arg["value"] if isinstance(arg, Mapping) else arg


def values(doc: Doc, name: str) -> list[object]:
    """The values of a (dotted) field in a `_source`; missing and null give []."""
    current: list[object] = [doc]
    for part in name.split("."):
        nxt: list[object] = []
        for node in current:
            if isinstance(node, Mapping) and part in node:
                value = node[part]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return [v for v in current if v is not None]


def _key(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _equal(a: object, b: object) -> bool:
    return _key(a) == _key(b)


def _in_range(value: object, spec: Mapping[str, object], now: float) -> bool:
    bounds = {k: spec[k] for k in ("gt", "gte", "lt", "lte") if spec.get(k) is not None}
    as_date = any(isinstance(b, str) and not _is_number(b) for b in bounds.values())
    x = _millis(value) if as_date else _number_or_millis(value)
    if x is None:
        return False
    for op, bound in bounds.items():
        b = _millis(bound, now) if as_date else _number_or_millis(bound)
        if b is not None and op in ("gt", "lte") and _date_only(bound):
            b += DAY_MS - 1  # OpenSearch rounds a missing time up for gt and lte
        if b is None:
            return False
        ok = {"gt": x > b, "gte": x >= b, "lt": x < b, "lte": x <= b}[op]
        if not ok:
            return False
    return True


def _date_only(bound: object) -> bool:
    return isinstance(bound, str) and _DATE_ONLY.match(bound) is not None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _number_or_millis(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return float(value) if _is_number(value) else _millis(value)
    return None


def _millis(value: object, now: float | None = None) -> float | None:
    """Epoch millis of a date value: numbers are epoch millis, strings ISO dates or
    (bounds only) date math on `now`."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    math_ = _MATH.match(value)
    if math_ and now is not None:
        sign, amount, unit = math_.groups()
        delta = 0 if sign is None else int(amount) * _UNIT_S[unit] * (1 if sign == "+" else -1)
        return (now + delta) * 1000.0
    return iso_millis(value)


def iso_millis(text: str) -> float | None:
    """Epoch millis of an ISO date or date-time (naive means UTC); None if not one."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(text)
        except ValueError:
            return None
        parsed = datetime(day.year, day.month, day.day)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp() * 1000.0


def problems(query: object, path: str = "filter") -> list[str]:
    """Why a filter cannot be evaluated exactly (empty when it can)."""
    if not isinstance(query, Mapping) or len(query) != 1:
        return [f"{path}: expected one query, like {{term: {{in_stock: false}}}}"]
    [(kind, spec)] = query.items()
    if kind == "bool":
        return _bool_problems(spec, f"{path}.bool")
    if kind not in LEAF_QUERIES:
        supported = ", ".join((*LEAF_QUERIES, "bool"))
        return [f"{path}: {kind!r} is not supported in rule filters (supported: {supported})"]
    return _leaf_problems(kind, spec, f"{path}.{kind}")


def _bool_problems(spec: object, path: str) -> list[str]:
    if not isinstance(spec, Mapping):
        return [f"{path}: expected a mapping of must/filter/should/must_not"]
    out = [f"{path}: unknown bool key {k!r}" for k in spec if k not in BOOL_KEYS]
    msm = spec.get("minimum_should_match")
    if msm is not None and (isinstance(msm, bool) or not isinstance(msm, int)):
        out.append(f"{path}.minimum_should_match: only a whole number is supported")
    for key in ("must", "filter", "should", "must_not"):
        got = spec.get(key, [])
        for i, clause in enumerate(got if isinstance(got, list) else [got]):
            out += problems(clause, f"{path}.{key}[{i}]")
    return out


def _leaf_problems(kind: str, spec: object, path: str) -> list[str]:
    if kind in ("match_all", "match_none"):
        return []
    if not isinstance(spec, Mapping):
        return [f"{path}: expected a mapping"]
    if kind == "ids":
        ok = isinstance(spec.get("values"), list)
        return [] if ok else [f"{path}: expected {{values: [id, ...]}}"]
    if kind == "exists":
        return [] if isinstance(spec.get("field"), str) else [f"{path}: expected {{field: name}}"]
    named = [k for k in spec if k not in ("boost", "_name")]
    if len(named) != 1:
        return [f"{path}: expected exactly one field"]
    arg = spec[named[0]]
    if kind == "terms" and not isinstance(arg, list):
        return [f"{path}.{named[0]}: terms needs a list of values"]
    if kind == "range":
        return _range_problems(arg, f"{path}.{named[0]}")
    return []


def _range_problems(arg: object, path: str) -> list[str]:
    if not isinstance(arg, Mapping) or not any(k in arg for k in ("gt", "gte", "lt", "lte")):
        return [f"{path}: range needs gt, gte, lt or lte"]
    out = [f"{path}: unknown range key {k!r}" for k in arg if k not in RANGE_KEYS]
    for op in ("gt", "gte", "lt", "lte"):
        bound = arg.get(op)
        if isinstance(bound, str) and not _is_number(bound) and not _date_ok(bound):
            out.append(
                f"{path}.{op}: {bound!r} must be a number, an ISO date (2025-12-01), a full "
                "date-time with seconds (2025-12-01T08:00:00Z) or now-30d (units w d h m s)"
            )
        if isinstance(bound, float) and not math.isfinite(bound):
            out.append(f"{path}.{op}: must be finite")
    return out


def _date_ok(bound: str) -> bool:
    if _MATH.match(bound):
        return True
    full = _DATE_ONLY.match(bound) or _FULL_TIME.search(bound)
    return bool(full) and iso_millis(bound) is not None


def fields(query: object) -> Iterator[str]:
    """The field names a (valid) filter reads."""
    if not isinstance(query, Mapping):
        return
    for kind, spec in query.items():
        if kind == "bool" and isinstance(spec, Mapping):
            for key in ("must", "filter", "should", "must_not"):
                got = spec.get(key, [])
                for clause in got if isinstance(got, list) else [got]:
                    yield from fields(clause)
        elif kind == "exists" and isinstance(spec, Mapping):
            yield str(spec.get("field"))
        elif kind in ("term", "terms", "range", "prefix") and isinstance(spec, Mapping):
            yield from (k for k in spec if k not in ("boost", "_name"))
