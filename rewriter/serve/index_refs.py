"""Indices a search body names inside itself, beside the one in the path.

A `terms` lookup (`{"terms": {"f": {"index": ..., "id": ...}}}`), a `more_like_this` item
(`{"_index": ..., "_id": ...}`), a `geo_shape` `indexed_shape` and a `percolate` query read
documents of another index. Through the proxy they could read affinity's private indices (a
user's profile, the events log), so the proxy checks these names like the path's.

Pure: the body in, the names out. Every object key `index` or `_index` with a string value
counts, wherever it is: a field that happens to be called `index` only matters when its
value names a private index, which is then refused all the same."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection
from typing import Any

REFERENCE_KEYS = ("index", "_index")


def referenced_indices(body: Any) -> list[str]:
    """Every string under an `index` or `_index` key in `body`, in document order."""
    found: list[str] = []
    stack = [body]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in REFERENCE_KEYS and isinstance(value, str):
                    found.append(value)
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return found


def reads_private(expression: str, private: Collection[str]) -> bool:
    """Whether an index expression (names, patterns, `_all`, comma-separated) can reach one
    of the `private` indices (or their versioned `<name>-v<N>` indices behind the alias)."""
    for name in (n.strip() for n in expression.split(",")):
        if name in ("_all", "*"):
            return True
        for own in private:
            if name == own or name.startswith(f"{own}-v") or fnmatch.fnmatchcase(own, name):
                return True
            if fnmatch.fnmatchcase(f"{own}-v1", name):
                return True
    return False


def clears_every_scroll(body: Any, params: dict[str, str]) -> bool:
    """A scroll deletion of `_all`: it would clear every client's scrolls, not the caller's."""
    given: Any = body.get("scroll_id") if isinstance(body, dict) else None
    ids = [given] if isinstance(given, str) else list(given) if isinstance(given, list) else []
    ids += params.get("scroll_id", "").split(",")
    return any(isinstance(i, str) and i.strip() == "_all" for i in ids)
