"""Experiments: A/B tests of boost profiles, defined in YAML and assigned by hash.

One file per experiment in `<AFFINITY_PROFILES_DIR>/experiments/*.yaml` (profiles/experiments/
by default; boost profiles are only read from profiles/*.yaml, so the two never mix):

    name: movielens-alpha          # unique; `affinity experiment report NAME`
    index: catalog                 # the index (or alias) as applications name it in the URL
    salt: 2024-05-a                # a new salt reshuffles users into variants
    start: 2024-05-01T00:00:00Z    # ISO 8601 or epoch seconds
    end: 2024-06-01T00:00:00Z      # optional: open-ended without it
    primary_metric: ctr            # optional (default ctr): what the verdict is about
    control: generic               # optional (default: the first variant)
    variants:                      # name -> spec; traffic in percent, summing to 100
      generic: {traffic: 50, generic: true}
      personal: {traffic: 50, boost_profile: movielens, alpha: 2.5}

A variant is the generic view (`generic: true`, the same as `X-Personalization: off`) or a
boost profile (`boost_profile`, default: the index's usual one) with an optional `alpha`
override. Errors name file, line and column.

Assignment: bucket = sha256(salt, experiment name, pseudonymized user id) mapped onto [0, 1)
and cut by the cumulative traffic shares. It is deterministic (the same user gets the same
variant in every session and process), needs no stored state, and is independent between
experiments because the name and salt enter the hash. Only searches from identified users
(`X-User-Id`) that choose neither `X-Boost-Profile` nor `X-Personalization: off` are enrolled;
a request that picks its own treatment would only blur the comparison.

Two experiments may not target the same index at overlapping times: a search can only be
ranked one way.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import time
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode

from rewriter.boost.profile import BoostProfile
from rewriter.events.fields import iso, parse_timestamp
from rewriter.ranking.rewrite import RequestContext

EXPERIMENTS_SUBDIR = "experiments"
METRICS: tuple[str, ...] = (
    "ctr",
    "add_to_cart_rate",
    "conversion_rate",
    "average_order_value",
    "revenue_per_user",
    "repeat_visit_rate",
)
TRAFFIC_TOLERANCE = 1e-6


class ExperimentError(ValueError):
    """An experiment file that cannot be used; the message starts with `file:line:column:`."""


@dataclass(frozen=True)
class Variant:
    """One arm: the generic view, or a boost profile with an optional alpha override."""

    name: str
    traffic: float
    generic: bool = False
    boost_profile: str | None = None
    alpha: float | None = None

    def apply(self, boost: BoostProfile) -> BoostProfile:
        """The boost profile this variant ranks with (alpha override applied)."""
        return boost if self.alpha is None else replace(boost, alpha=self.alpha)


@dataclass(frozen=True)
class Experiment:
    name: str
    index: str
    salt: str
    start: float
    variants: tuple[Variant, ...]
    control: str
    end: float | None = None
    primary_metric: str = "ctr"
    source: str = "<string>"
    line: int = 1

    def active(self, now: float) -> bool:
        return self.start <= now and (self.end is None or now < self.end)

    def variant(self, name: str) -> Variant:
        return next(v for v in self.variants if v.name == name)

    def assign(self, pseudonym: str) -> Variant:
        """The user's variant: their hash bucket cut by cumulative traffic."""
        point = bucket(self.salt, self.name, pseudonym) * 100.0
        cumulative = 0.0
        for v in self.variants:
            cumulative += v.traffic
            if point < cumulative:
                return v
        return self.variants[-1]

    @property
    def treatments(self) -> tuple[Variant, ...]:
        return tuple(v for v in self.variants if v.name != self.control)

    def overlaps(self, other: Experiment) -> bool:
        end_a = math.inf if self.end is None else self.end
        end_b = math.inf if other.end is None else other.end
        return self.index == other.index and self.start < end_b and other.start < end_a


def bucket(salt: str, experiment: str, pseudonym: str) -> float:
    """A uniform number in [0, 1) from sha256(salt, experiment, user)."""
    digest = hashlib.sha256(f"{salt}\x1f{experiment}\x1f{pseudonym}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


@dataclass(frozen=True)
class Arm:
    """A search's enrollment: which experiment and which variant."""

    experiment: str
    variant: Variant

    def tags(self) -> dict[str, str]:
        return {"experiment": self.experiment, "variant": self.variant.name}


class ExperimentSet:
    """The loaded experiments; `enroll` is what the proxy calls per search."""

    def __init__(self, experiments: Iterable[Experiment] = ()) -> None:
        self._by_name = {e.name: e for e in experiments}

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def get(self, name: str) -> Experiment:
        if name not in self._by_name:
            known = ", ".join(sorted(self._by_name)) or "none defined"
            raise KeyError(f"no experiment named {name!r} (known: {known})")
        return self._by_name[name]

    def enroll(self, index: str, pseudonym: str | None, now: float) -> Arm | None:
        """The active experiment on `index` and the user's variant, or None."""
        if not pseudonym:
            return None
        for exp in self._by_name.values():
            if exp.index == index and exp.active(now):
                return Arm(exp.name, exp.assign(pseudonym))
        return None


# --------------------------------------------------------------------------- loading
def experiments_dir(boost_dir: str | Path) -> Path:
    return Path(boost_dir) / EXPERIMENTS_SUBDIR


def load_experiments(
    directory: str | Path, known_profiles: Collection[str] | None = None
) -> ExperimentSet:
    """Every *.yaml in `directory` (none if it does not exist), validated together."""
    found: list[Experiment] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        exp = parse_experiment(path.read_bytes(), str(path), known_profiles)
        for other in found:
            if other.name == exp.name:
                _raise(exp, f"experiment name {exp.name!r} is already used by {other.source}")
            if exp.overlaps(other):
                _raise(
                    exp,
                    f"{exp.name} and {other.name} ({other.source}) both target index "
                    f"{exp.index!r} at overlapping times; a search can only be ranked one way: "
                    "end one before the other starts, or target another index",
                )
        found.append(exp)
    return ExperimentSet(found)


def _raise(exp: Experiment, message: str) -> NoReturn:
    raise ExperimentError(f"{exp.source}:{exp.line}:1: {message}")


_TOP = ("name", "index", "salt", "start", "end", "primary_metric", "control", "variants")
_VARIANT = ("traffic", "generic", "boost_profile", "alpha")
_REQUIRED = ("name", "index", "salt", "start", "variants")


@dataclass(frozen=True)
class _Ctx:
    source: str
    constructor: SafeConstructor

    def fail(self, node: Node, message: str) -> NoReturn:
        mark = node.start_mark
        raise ExperimentError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {message}")

    def pairs(self, node: Node, allowed: Sequence[str], what: str) -> dict[str, Node]:
        if not isinstance(node, MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value lines)")
        out: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node)
            if allowed and key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.fail(
                    key_node,
                    f"unknown key {key!r} in {what}{hint} (valid keys: {', '.join(allowed)})",
                )
            if key in out:
                self.fail(key_node, f"duplicate key {key!r} in {what}")
            out[str(key)] = value_node
        return out

    def scalar(self, node: Node) -> object:
        if not isinstance(node, ScalarNode):
            self.fail(node, "expected a single value here, not a list or mapping")
        return self.constructor.construct_object(node)

    def text(self, node: Node, what: str) -> str:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
            self.fail(node, f"{what} must be a non-empty string, got {value!r}")
        return str(value).strip()

    def number(self, node: Node, what: str, low: float, high: float = math.inf) -> float:
        value = self.scalar(node)
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not low <= value <= high:  # type: ignore[arg-type]
            self.fail(node, f"{what} must be a number between {low:g} and {high:g}, got {value!r}")
        return float(value)  # type: ignore[arg-type]

    def time(self, node: Node, what: str) -> float:
        value = self.scalar(node)
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=UTC)
            return moment.timestamp()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
        try:
            return parse_timestamp(value)
        except ValueError as err:
            self.fail(node, f"{what} {err}")


def parse_experiment(
    data: str | bytes, source: str = "<string>", known_profiles: Collection[str] | None = None
) -> Experiment:
    """Validate one experiment file; `known_profiles` checks boost profile names."""
    try:
        root = yaml.compose(data, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        raise ExperimentError(f"{source}:{where}: invalid YAML: {exc.problem}") from exc
    if root is None:
        raise ExperimentError(
            f"{source}:1:1: empty experiment file; it needs {', '.join(_REQUIRED)}"
        )
    ctx = _Ctx(source, SafeConstructor())
    top = ctx.pairs(root, _TOP, "the experiment")
    missing = [k for k in _REQUIRED if k not in top]
    if missing:
        ctx.fail(root, f"missing required key {missing[0]!r} (required: {', '.join(_REQUIRED)})")
    variants = _variants(ctx, top["variants"], known_profiles)
    names = [v.name for v in variants]
    control = ctx.text(top["control"], "control") if "control" in top else names[0]
    if control not in names:
        ctx.fail(top["control"], f"control {control!r} is not a variant ({', '.join(names)})")
    start = ctx.time(top["start"], "start")
    end = ctx.time(top["end"], "end") if "end" in top else None
    if end is not None and end <= start:
        ctx.fail(top["end"], f"end {iso(end)} is not after start {iso(start)}")
    metric = ctx.text(top["primary_metric"], "primary_metric") if "primary_metric" in top else "ctr"
    if metric not in METRICS:
        ctx.fail(
            top["primary_metric"], f"primary_metric {metric!r} is not one of {', '.join(METRICS)}"
        )
    return Experiment(
        name=ctx.text(top["name"], "name"),
        index=ctx.text(top["index"], "index"),
        salt=ctx.text(top["salt"], "salt"),
        start=start,
        end=end,
        variants=variants,
        control=control,
        primary_metric=metric,
        source=source,
        line=top["name"].start_mark.line + 1,
    )


def _variants(ctx: _Ctx, node: Node, known_profiles: Collection[str] | None) -> tuple[Variant, ...]:
    specs = ctx.pairs(node, (), "variants")
    if len(specs) < 2:
        ctx.fail(node, f"an experiment needs at least two variants, got {len(specs)}")
    variants = tuple(_variant(ctx, name, spec, known_profiles) for name, spec in specs.items())
    total = sum(v.traffic for v in variants)
    if abs(total - 100.0) > TRAFFIC_TOLERANCE:
        ctx.fail(node, f"variant traffic must add up to 100 (percent), got {total:g}")
    return variants


def _variant(ctx: _Ctx, name: str, node: Node, known_profiles: Collection[str] | None) -> Variant:
    fields = ctx.pairs(node, _VARIANT, f"variant {name!r}")
    if "traffic" not in fields:
        ctx.fail(node, f"variant {name!r} needs `traffic:` (percent of users, > 0)")
    traffic = ctx.number(fields["traffic"], f"variant {name!r} traffic", 0.0, 100.0)
    if traffic == 0:
        ctx.fail(fields["traffic"], f"variant {name!r} traffic must be > 0")
    generic = bool(ctx.scalar(fields["generic"])) if "generic" in fields else False
    profile = (
        ctx.text(fields["boost_profile"], "boost_profile") if "boost_profile" in fields else None
    )
    alpha = ctx.number(fields["alpha"], "alpha", 0.0) if "alpha" in fields else None
    if generic and (profile is not None or alpha is not None):
        ctx.fail(node, f"variant {name!r} is generic: it cannot also set boost_profile or alpha")
    if profile is not None and known_profiles is not None and profile not in known_profiles:
        ctx.fail(
            fields["boost_profile"],
            f"boost profile {profile!r} is not loaded (known: {', '.join(sorted(known_profiles))})",
        )
    return Variant(name, traffic, generic, profile, alpha)


def describe(exp: Experiment) -> Mapping[str, object]:
    """The experiment as plain data (for `--format json` and reports)."""
    return {
        "name": exp.name,
        "index": exp.index,
        "salt": exp.salt,
        "start": iso(exp.start),
        "end": None if exp.end is None else iso(exp.end),
        "control": exp.control,
        "primary_metric": exp.primary_metric,
        "variants": {
            v.name: {
                "traffic": v.traffic,
                "generic": v.generic,
                "boost_profile": v.boost_profile,
                "alpha": v.alpha,
            }
            for v in exp.variants
        },
        "source": exp.source,
    }


# --------------------------------------------------------------------------- proxy hooks
def enroll_search(
    experiments: ExperimentSet,
    index: str,
    pseudonym: str | None,
    chosen: bool,
    now: float | None = None,
) -> Arm | None:
    """The arm of one search by the user `pseudonym`, or None: anonymous searches, and
    searches that chose their own treatment (`chosen`: X-Boost-Profile or
    X-Personalization: off), are not enrolled."""
    if chosen or not pseudonym or not len(experiments):
        return None
    return experiments.enroll(index, pseudonym, time.time() if now is None else now)


def arm_context(arm: Arm | None, context: RequestContext) -> RequestContext:
    """The generic variant is the `X-Personalization: off` view."""
    if arm is not None and arm.variant.generic:
        return replace(context, personalization_off=True)
    return context


def tag_log(plog: dict[str, Any], arm: Arm | None) -> None:
    """Add experiment, variant and a fresh query_id to a response's `personalization`."""
    plog["experiment"] = arm.experiment if arm else None
    plog["variant"] = arm.variant.name if arm else None
    plog["query_id"] = uuid.uuid4().hex
    if arm is not None and arm.variant.generic:
        plog["reason"] = "experiment_control"
