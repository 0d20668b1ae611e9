"""`affinity export segments|profiles`: what affinity learned, for CDPs, e-mail and ad tools.

One row per user, keyed by the pseudonym (raw ids never reach an index; an operator who
needs them maps pseudonyms back with their own records). Opted-out users are left out, and
deleted users have no profile to export. Segment priors (`segment:` documents) are not users.

- segments: the boost profile's segments that hold on the profile's facts (sessions,
  purchases, lifetime value, events, mass, first/last seen; conditions on the request's
  device or geo cannot hold here), plus the stored `segments` (`affinity segments build`).
- profiles: the same, with each weighted attribute's top values and their affinity in [0, 1].

`--since` keeps profiles updated at or after that time.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator, Mapping
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.profile import BoostProfile
from rewriter.boost.segments import matched_segments
from rewriter.profiles.doc import UnreadableProfile, profile_from_source
from rewriter.profiles.view import affinity_view
from rewriter.ranking.facts import facts_for

KINDS = ("segments", "profiles")
TOP_VALUES = 5


def row(source: Mapping[str, Any], boost: BoostProfile, kind: str, now: float) -> dict | None:
    """One user's export row; None for opted-out users, priors and unreadable profiles."""
    if str(source.get("user", "")).startswith("segment:") or source.get("opt_out"):
        return None
    try:
        view = affinity_view(profile_from_source(source), now, boost.top_k)
    except UnreadableProfile:
        return None
    facts = facts_for(view, now=now, pseudonym=view.user)
    names = [s.name for s in matched_segments(boost.segments, facts)]
    names += [s for s in view.segments if s not in names]
    out: dict[str, Any] = {"user": view.user, "segments": names}
    if kind == "profiles":
        out["affinities"] = {
            attr: dict(sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_VALUES])
            for attr, values in view.affinities.items()
            if boost.attributes.get(attr, 0) > 0 and values
        }
        out["updated_at"] = source.get("updated_at")
    return out


def rows(
    es: OpenSearch,
    settings: config.Settings,
    boost: BoostProfile,
    kind: str,
    since: float | None = None,
) -> Iterator[dict]:
    query: dict[str, Any] = {"query": {"match_all": {}}}
    if since is not None:
        query = {"query": {"range": {"updated_at": {"gte": since}}}}
    now = time.time()
    for hit in helpers.scan(es, index=settings.indices.profiles, query=query):
        found = row(hit["_source"], boost, kind, now)
        if found is not None:
            yield found


def render(found: dict, fmt: str) -> str:
    if fmt == "jsonl":
        return json.dumps(found, sort_keys=True)
    buffer = io.StringIO()
    values = [found["user"], "|".join(found["segments"])]
    if "affinities" in found:
        values.append(json.dumps(found["affinities"], sort_keys=True))
    csv.writer(buffer).writerow(values)
    return buffer.getvalue().rstrip("\r\n")


def csv_header(kind: str) -> str:
    return "user,segments" + (",affinities" if kind == "profiles" else "")
