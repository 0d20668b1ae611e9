"""Which key scope each proxy path needs when auth is on (serve/auth_gate.py)."""

from __future__ import annotations

import pytest

from rewriter.serve.auth_gate import needed_scope


@pytest.mark.parametrize(
    ("path", "scope"),
    [
        ("/events", "events"),
        ("/events/", "events"),
        ("/_affinity/metrics", "admin"),
        ("/shop/_search", "search"),
        ("/shop/_msearch", "search"),
        ("/_affinity/suggest", "search"),
        ("/_affinity/recommend", "search"),
        ("/_affinity/placements", "search"),
    ],
)
def test_each_path_needs_its_scope(path: str, scope: str) -> None:
    assert needed_scope(path) == scope
