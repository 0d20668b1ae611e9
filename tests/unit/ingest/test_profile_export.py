"""`affinity export`: one row per user, pseudonyms only, opted-out users and priors left out."""

from __future__ import annotations

import time

from rewriter.boost.profile import parse_boost_profile
from rewriter.ingest.profile_export import csv_header, render, row
from rewriter.profiles.fold import FoldConfig, empty_profile

BOOST = parse_boost_profile(
    "name: shop\nattributes: {brand: 1.0}\nsegments:\n  loyal: {when: {sessions: {gte: 3}}}\n"
)


def _profile(user: str, sessions: int, **more: object) -> dict:
    doc = dict(empty_profile(user, FoldConfig()))
    now = time.time()
    doc.update(
        landmark=now, mass=4.0, first_seen=now, last_seen=now, updated_at=now,
        affinities={"brand": {"acme": 4.0, "zenit": 2.0}},
        counters={"events": 4, "sessions": sessions, "purchases": 0, "lifetime_value": 0.0},
        segments=["device=mobile"], **more,
    )  # fmt: skip
    return doc


def test_rows_segments_and_affinities() -> None:
    now = time.time()
    seg = row(_profile("p1", 5), BOOST, "segments", now)
    assert seg == {"user": "p1", "segments": ["loyal", "device=mobile"]}
    prof = row(_profile("p2", 1), BOOST, "profiles", now)
    assert prof is not None and prof["segments"] == ["device=mobile"]
    assert prof["affinities"] == {"brand": {"acme": 1.0, "zenit": 0.5}}
    assert render(seg, "csv") == "p1,loyal|device=mobile"
    assert csv_header("segments") == "user,segments"


def test_opted_out_and_priors_never_appear() -> None:
    now = time.time()
    assert row(_profile("p3", 5, opt_out=True), BOOST, "segments", now) is None
    prior = {"user": "segment:device=mobile", "kind": "segment_prior", "priors": {}}
    assert row(prior, BOOST, "profiles", now) is None
