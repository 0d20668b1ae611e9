"""Autocomplete at request time (issue 11, items 1-2): pure, no I/O.

`GET /_affinity/suggest?index=catalog&q=...` searches the catalog's suggestions index
(`suggestions_index`, built by ingest/suggestions.py) with `suggest_body`: the prefix as a
`bool_prefix` multi_match over the `search_as_you_type` field, a fuzzy match for typos, and
the suggestion's popularity (distinct users) as log10(1 + popularity), so the generic order
is relevance plus popularity. The body then goes through the same rewrite as any search
(ranking/rewrite.py): a suggestion carries the top brands and categories of the items it
leads to in fields named like the catalog's, so the stored `affinity` script scores it with
the same formula, and the reference scorer predicts the engine's scores.

The user's own recent searches (`recent_body`, read from their impressions in the same
_msearch) come first for a prefix of at most RECENT_MAX_PREFIX characters
(`merge_suggestions`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rewriter.ranking.reference import POPULARITY_FIELD

TEXT_FIELD = "text"
KINDS = ("query", "title", "brand", "category")
MAX_PREFIX_CHARS = 100
MAX_SIZE = 50
DEFAULT_SIZE = 8
RECENT_MAX_PREFIX = 2
"""Recent searches come first for an empty prefix or one of at most this many characters."""
MAX_RECENT = 3
SUGGESTIONS_SUFFIX = "-suggestions"


class SuggestError(ValueError):
    """A request the suggest endpoint refuses: `field` names the parameter."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def suggestions_index(index: str) -> str:
    """The alias of a catalog's suggestions index: `catalog` -> `catalog-suggestions`."""
    return f"{index}{SUGGESTIONS_SUFFIX}"


def clean_prefix(q: str | None) -> str:
    """The prefix as typed, whitespace trimmed; "" for none. Raises SuggestError for one
    longer than MAX_PREFIX_CHARS or holding control characters."""
    text = (q or "").strip()
    if len(text) > MAX_PREFIX_CHARS:
        raise SuggestError(
            "q", f"q is {len(text)} characters; suggestions take prefixes of up to "
            f"{MAX_PREFIX_CHARS}: send what the user typed so far"
        )  # fmt: skip
    if any(ord(c) < 32 for c in text):
        raise SuggestError("q", "q holds control characters; send the text the user typed")
    return " ".join(text.split())


def clean_size(size: str | None) -> int:
    if size is None or size == "":
        return DEFAULT_SIZE
    try:
        value = int(size)
    except ValueError:
        value = -1
    if not 1 <= value <= MAX_SIZE:
        raise SuggestError("size", f"size must be a whole number 1..{MAX_SIZE}, got {size[:20]!r}")
    return value


def suggest_body(prefix: str, size: int) -> dict[str, Any]:
    """The search for `prefix`: every word a prefix match (the last one as a prefix), or
    the whole text within typo distance; plus log10(1 + popularity)."""
    fields = [TEXT_FIELD, f"{TEXT_FIELD}._2gram", f"{TEXT_FIELD}._3gram"]
    matches: list[dict[str, Any]] = [
        {"multi_match": {"query": prefix, "type": "bool_prefix", "fields": fields}},
        {"match": {TEXT_FIELD: {"query": prefix, "fuzziness": "AUTO", "prefix_length": 1}}},
    ]
    return {
        "size": size,
        "query": {
            "function_score": {
                "query": {"bool": {"should": matches, "minimum_should_match": 1}},
                "functions": [
                    {
                        "field_value_factor": {
                            "field": POPULARITY_FIELD,
                            "modifier": "log1p",
                            "missing": 0,
                        }
                    }
                ],
                "boost_mode": "sum",
            }
        },
    }


def recent_body(pseudonym: str, index: str, prefix: str) -> dict[str, Any]:
    """The user's latest searches on `index` starting with `prefix` (any case), newest first."""
    filters: list[dict[str, Any]] = [
        {"term": {"user_id": pseudonym}},
        {"term": {"index": index}},
        {"exists": {"field": "query.raw"}},
    ]
    if prefix:
        filters.append({"prefix": {"query.raw": {"value": prefix, "case_insensitive": True}}})
    return {
        "size": 50,
        "query": {"bool": {"filter": filters}},
        "sort": [{"timestamp": "desc"}],
        "_source": ["query"],
    }


def wants_recent(prefix: str) -> bool:
    return len(prefix) <= RECENT_MAX_PREFIX


def recent_texts(response: Mapping[str, Any], limit: int = MAX_RECENT) -> list[str]:
    """Distinct search texts (ignoring case) from a `recent_body` response, newest first."""
    hits = (response.get("hits") or {}).get("hits") or []
    seen: dict[str, str] = {}
    for hit in hits:
        text = (hit.get("_source") or {}).get("query")
        if isinstance(text, str) and text.strip() and text.casefold() not in seen:
            seen[text.casefold()] = text
    return list(seen.values())[:limit]


def merge_suggestions(
    recent: Sequence[str], hits: Sequence[Mapping[str, Any]], attributes: Sequence[str], size: int
) -> list[dict[str, Any]]:
    """Recent searches first (kind "recent"), then the suggestions in the engine's order,
    each text once (ignoring case), at most `size`."""
    out: list[dict[str, Any]] = [{"text": t, "kind": "recent"} for t in recent]
    seen = {t.casefold() for t in recent}
    for hit in hits:
        source = hit.get("_source") or {}
        text = source.get(TEXT_FIELD)
        if not isinstance(text, str) or text.casefold() in seen:
            continue
        seen.add(text.casefold())
        item: dict[str, Any] = {
            "id": hit.get("_id"),
            "text": text,
            "kind": source.get("kind"),
            "score": hit.get("_score"),
            "popularity": source.get(POPULARITY_FIELD),
            "result_count": source.get("result_count"),
        }
        for name in attributes:
            if name in source:
                item[name] = source[name]
        if "_affinity" in hit:
            item["why"] = hit["_affinity"]
        out.append(item)
    return out[:size]
