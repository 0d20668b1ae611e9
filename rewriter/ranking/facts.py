"""The facts a segment condition is evaluated against, read from a user's profile and the
request's context at request time."""

from __future__ import annotations

from rewriter.boost.segments import Facts
from rewriter.profiles.view import UserAffinity


def facts_for(
    user: UserAffinity | None,
    *,
    now: float,
    pseudonym: str | None = None,
    device: str | None = None,
    geo: str | None = None,
) -> Facts:
    """The facts of a request: the profile's (if any) and the context's."""
    if user is None:
        return Facts(now=now, user=pseudonym, device=device, geo=geo)
    return Facts(
        now=now,
        user=pseudonym or user.user,
        counters=dict(user.counters),
        mass=user.mass,
        first_seen=user.first_seen,
        last_seen=user.last_seen,
        device=device,
        geo=geo,
    )
