"""Shared value types that cross module boundaries (profiles → rewrite → reference).

Kept tiny on purpose: each module owns its own logic; this file only fixes the shapes they
exchange, so the profile math (profiles.py) and the rewrite/reference scorer can evolve apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class UserAffinity:
    """A user's profile as the rewriter needs it at request time.

    affinities: attribute -> value -> normalized affinity in [0, 1] (top-K values only;
        aff[a][v] = g[a][v] / max g[a], see docs/design.md "Scoring, exactly").
    mass: the user's decayed total event mass m at request time (for alpha_eff = alpha·m/(m+k)).
    """

    user: str
    affinities: Mapping[str, Mapping[str, float]]
    mass: float
    segments: tuple[str, ...] = ()
    opt_out: bool = False
    counters: Mapping[str, float] = field(default_factory=dict)
    first_seen: float | None = None  # epoch seconds of the first/last folded event
    last_seen: float | None = None
