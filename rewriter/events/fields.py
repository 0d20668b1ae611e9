"""Validation primitives shared by events and catalog records: text, numbers, flags, times
and value lists, each raising `_Invalid` with the field's name (as the caller spells it) and a
sentence on what to send. Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIN_EVENT_TIME = 631_152_000.0  # 1990-01-01T00:00:00Z: nothing affinity sees is older.


MAX_EVENT_TIME = 4_102_444_800.0  # 2100-01-01T00:00:00Z


MIN_CATALOG_TIME = -5_364_662_400.0  # 1800-01-01: catalogs hold old films and books.


EPOCH_MS_THRESHOLD = 1e11
"""Numbers at least this large are epoch milliseconds (1e11 s is the year 5138)."""


MAX_ID_CHARS = 512


MAX_TEXT_CHARS = 2048


MAX_VALUES_PER_ATTRIBUTE = 100


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


class _Invalid(Exception):
    """Raised inside validation; turned into a Rejection at the public boundary."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(reason)
        self.name = name
        self.reason = reason


# --- scalar coercion (each names the field in its message) ----------------------------------


def _text(value: object, name: str, max_chars: int = MAX_ID_CHARS) -> str | None:
    if value.__class__ is str:  # the common case first: this runs ~10 times per event
        text = value.strip()  # type: ignore[attr-defined]
    elif value is None:
        return None
    elif isinstance(value, bool) or not isinstance(value, str | int):
        raise _Invalid(name, f"{name} must be a string, got {type(value).__name__} {value!r}")
    else:
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


MAX_INTEGER = 2**31 - 1
"""The largest whole number an event field holds: the events index maps them as OpenSearch
`integer` (a larger one once failed the bulk request of every event committed with it)."""


def _integer(value: object, name: str, minimum: int) -> int | None:
    number = _number(value, name)
    if number is None:
        return None
    if number != int(number) or not minimum <= number <= MAX_INTEGER:
        raise _Invalid(
            name, f"{name} must be a whole number from {minimum} to {MAX_INTEGER}, got {value!r}"
        )
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
