"""The request-time view of a profile, and aggregates over normalized profiles. Pure: no I/O.

`affinity_view` turns a stored profile into the `UserAffinity` the rewrite and the reference
scorer read: aff[a][v] = g[a][v] / max g[a] for the top_k values per attribute, and the
decayed mass at request time (docs/architecture.md, "Scoring").
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from rewriter.profiles.doc import HorizonState, ProfileDoc, check_numbers
from rewriter.profiles.fold import decayed

# --- request-time view ----------------------------------------------------------------------


def top_values(values: Mapping[str, float], k: int) -> list[tuple[str, float]]:
    """The k largest (value, g) pairs, largest first, ties broken by value (deterministic)."""
    return sorted(values.items(), key=lambda vg: (-vg[1], vg[0]))[:k]


def affinity_view(profile: ProfileDoc, now: float, top_k: int) -> UserAffinity:
    """What the rewriter needs: aff[a][v] = g[a][v] / max g[a] for the top_k values per
    attribute (the decay factor cancels, so `now` only matters for the mass), and the decayed
    event mass at `now`. Opted-out users get an empty view. A profile holding a number that
    cannot be ranked with raises UnreadableProfile (doc.check_numbers)."""
    if profile.get("opt_out") is True:
        return UserAffinity(user=profile["user"], affinities={}, mass=0.0, opt_out=True)
    check_numbers(profile)
    affinities: dict[str, dict[str, float]] = {}
    for attribute, values in profile["affinities"].items():
        top = top_values(values, top_k)
        if top and top[0][1] > 0.0:
            affinities[attribute] = {v: g / top[0][1] for v, g in top}
    counters = profile["counters"]
    last = profile.get("last_seen")
    horizons = {
        name: horizon_view(state, now if last is None else min(now, last), now, top_k)
        for name, state in (profile.get("horizons") or {}).items()
    }
    return UserAffinity(
        user=profile["user"],
        affinities=affinities,
        mass=decayed(profile["mass"], profile["landmark"], now, profile["half_life_s"]),
        segments=tuple(profile["segments"]),
        opt_out=False,
        counters={k: float(v) for k, v in counters.items()},
        first_seen=profile.get("first_seen"),
        last_seen=profile.get("last_seen"),
        horizons={name: values for name, values in horizons.items() if values},
    )


def horizon_view(
    state: HorizonState, last: float, now: float, top_k: int
) -> dict[str, dict[str, float]]:
    """A horizon's affinities at `now`: normalized per attribute like the long-term ones
    (aff = g / max g over the top_k values), then faded by the time since the user's last
    event `last`: × 2^(-(now - last)/H). An hour after a session with H = 2 h its values
    count 0.71, a day after 0.0002; item memory with H = 30 d fades over weeks."""
    fade = 2.0 ** (-(now - last) / state["half_life_s"])
    out: dict[str, dict[str, float]] = {}
    for attribute, values in state["affinities"].items():
        top = top_values(values, top_k)
        if top and top[0][1] > 0.0 and fade > 0.0:
            out[attribute] = {v: fade * g / top[0][1] for v, g in top}
    return out


def normalized(profile: ProfileDoc) -> dict[str, dict[str, float]]:
    """All stored values as aff = g / max g per attribute."""
    out: dict[str, dict[str, float]] = {}
    for attribute, values in profile["affinities"].items():
        peak = max(values.values(), default=0.0)
        if peak > 0.0:
            out[attribute] = {v: g / peak for v, g in values.items()}
    return out


def segment_priors(
    profiles: Iterable[ProfileDoc],
    segment_of: Callable[[ProfileDoc], str | None],
    *,
    top_k: int | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """segment → attribute → value → mean normalized affinity over the segment's profiles.

    A profile without a value counts as 0 for it, so the prior is an honest average.
    Opted-out profiles and those `segment_of` maps to None are skipped. With `top_k`, only
    the largest means per attribute are kept (largest first, ties by value).
    """
    members: dict[str, int] = defaultdict(int)
    sums: dict[str, dict[str, dict[str, float]]] = {}
    for profile in profiles:
        segment = segment_of(profile)
        if segment is None or profile["opt_out"]:
            continue
        members[segment] += 1
        target = sums.setdefault(segment, {})
        for attribute, values in normalized(profile).items():
            bucket = target.setdefault(attribute, {})
            for value, aff in values.items():
                bucket[value] = bucket.get(value, 0.0) + aff
    k = top_k if top_k is not None else sys.maxsize
    return {
        segment: {
            a: dict(top_values({v: s / members[segment] for v, s in vs.items()}, k))
            for a, vs in attrs.items()
        }
        for segment, attrs in sums.items()
    }


@dataclass(frozen=True)
class UserAffinity:
    """A user's profile as the rewriter needs it at request time.

    affinities: attribute -> value -> normalized affinity in [0, 1] (top-K values only;
        aff[a][v] = g[a][v] / max g[a], see docs/architecture.md "Scoring").
    mass: the user's decayed total event mass m at request time (for alpha_eff = alpha·m/(m+k)).
    horizons: horizon name (`session`, `items`) -> attribute (item ids under "item") ->
        value -> affinity in [0, 1], already faded by the time since the last event
        (`horizon_view`).
    """

    user: str
    affinities: Mapping[str, Mapping[str, float]]
    mass: float
    segments: tuple[str, ...] = ()
    opt_out: bool = False
    counters: Mapping[str, float] = field(default_factory=dict)
    first_seen: float | None = None  # epoch seconds of the first/last folded event
    last_seen: float | None = None
    horizons: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
