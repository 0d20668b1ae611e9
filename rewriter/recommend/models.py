"""What a recommendation request asks (`RecommendRequest`, `parse_request`) and the OpenSearch
bodies each model sends (pure: no I/O; serve/recommend.py sends them).

Every model ends in one catalog search (`catalog_body`): a first-pass query that says what the
model thinks of each candidate, under the request's `filter`, in stock where the catalog has
`in_stock`, minus excluded ids. The proxy then rewrites that body for the user exactly as a
search (ranking/rewrite.py): the stored script re-ranks the top `window` by affinity with the
boost profile's alpha, and the profile's rules (hide, boost, bury) apply. The first passes:

- `for_you`: popularity (the cold-start term's modifier and weight) plus, per weighted
  attribute, a constant `W_a` for items with one of the user's top values (`favored_clauses`):
  the user's kind of items come into the rescore window, and the script orders them.
- `related` / `bought_together`: each co-viewed / co-bought neighbour scores its pair's
  significance over the best one's (0..1] (`scored_ids`); with too little pair data,
  `similar_query`: more_like_this on the item's text fields plus its attribute values.
- `trending`: each rising item scores its rise over the biggest rise (0..1]
  (`trending_aggs` computes the rises in one aggregation over the events log).
- `recently_viewed`: the user's last distinct items (`recent_items_body`, a collapse over
  the events log), scored by recency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODELS: tuple[str, ...] = ("for_you", "related", "bought_together", "trending", "recently_viewed")
ITEM_MODELS: tuple[str, ...] = ("related", "bought_together")
PAIR_EVENT_TYPES: Mapping[str, tuple[str, ...]] = {
    "related": ("view", "click", "add_to_cart", "purchase", "rating_high", "rating_low"),
    "bought_together": ("purchase",),
}
"""The event types whose sessions make each pair table (co-views count every interaction)."""

DEFAULT_SIZE = 10
MAX_SIZE = 100
SEEN_LIMIT = 1000
TRENDING_CANDIDATES = 200
DAY = 86400.0
TEXT_FIELDS: tuple[str, ...] = ("title", "description")
IN_STOCK_FIELD = "in_stock"

Query = dict[str, Any]


class RecommendError(ValueError):
    """A request the recommend endpoint refuses: `field` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class RecommendRequest:
    index: str
    model: str
    item: str | None = None
    size: int = DEFAULT_SIZE
    filter: Query | None = None
    exclude_seen: bool = True


def parse_request(raw: Mapping[str, Any], default_index: str) -> RecommendRequest:
    """A request from a JSON body or URL parameters (strings), or RecommendError naming the
    field."""
    unknown = sorted(set(raw) - {"index", "model", "item", "size", "filter", "exclude_seen"})
    if unknown:
        raise RecommendError(
            unknown[0],
            "unknown field; the request takes index, model, item, size, filter and exclude_seen",
        )
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise RecommendError("model", f"required: one of {', '.join(MODELS)}")
    if model not in MODELS:
        raise RecommendError("model", f"unknown model {model!r}; known: {', '.join(MODELS)}")
    item = raw.get("item")
    if isinstance(item, int) and not isinstance(item, bool):
        item = str(item)
    if item is not None and (not isinstance(item, str) or not item or len(item) > 512):
        raise RecommendError("item", "must be an item id (a non-empty string)")
    if model in ITEM_MODELS and item is None:
        raise RecommendError("item", f"model {model} needs the id of the item to recommend for")
    index = raw.get("index", default_index)
    if not isinstance(index, str) or not index:
        raise RecommendError("index", "must be an index name")
    return RecommendRequest(
        index=index,
        model=model,
        item=item,
        size=_size(raw.get("size", DEFAULT_SIZE)),
        filter=_filter(raw.get("filter")),
        exclude_seen=_flag(raw.get("exclude_seen", True)),
    )


def _size(value: Any) -> int:
    try:
        size = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else -1
    except ValueError:
        size = -1
    if not 1 <= size <= MAX_SIZE:
        raise RecommendError("size", f"must be a whole number from 1 to {MAX_SIZE}, got {value!r}")
    return size


def _filter(value: Any) -> Query | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        import orjson

        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise RecommendError("filter", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or len(value) != 1:
        raise RecommendError("filter", 'must be one query DSL clause, e.g. {"term": {...}}')
    return value


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise RecommendError("exclude_seen", f"must be true or false, got {value!r}")


# --------------------------------------------------------------------------- catalog bodies
def in_stock_filter() -> Query:
    """In stock, or no `in_stock` value at all (catalogs without the field)."""
    return {
        "bool": {
            "should": [
                {"term": {IN_STOCK_FIELD: True}},
                {"bool": {"must_not": {"exists": {"field": IN_STOCK_FIELD}}}},
            ],
            "minimum_should_match": 1,
        }
    }


def catalog_body(
    first_pass: Query, size: int, request_filter: Query | None, exclude: Sequence[str]
) -> dict[str, Any]:
    """The catalog search a model sends (before the affinity rewrite)."""
    filters = [in_stock_filter(), *([request_filter] if request_filter else [])]
    query: Query = {"bool": {"must": [first_pass], "filter": filters}}
    if exclude:
        query["bool"]["must_not"] = [{"ids": {"values": list(dict.fromkeys(exclude))}}]
    return {"query": query, "size": size}


def favored_clauses(
    favored: Mapping[str, Sequence[str]], weights: Mapping[str, float]
) -> list[Query]:
    """Per attribute with weight > 0, `terms` on the user's favored values, scoring W_a."""
    return [
        {"terms": {attr: list(values), "boost": float(weights[attr])}}
        for attr, values in favored.items()
        if values and weights.get(attr, 0) > 0
    ]


def for_you_query(
    favored: Mapping[str, Sequence[str]],
    weights: Mapping[str, float],
    popularity_field: str,
    modifier: str,
    popularity_weight: float,
) -> Query:
    clauses = favored_clauses(favored, weights)
    base: Query = (
        {"bool": {"must": {"match_all": {}}, "should": clauses}} if clauses else {"match_all": {}}
    )
    functions = []
    if popularity_weight > 0:
        functions.append(
            {
                "field_value_factor": {
                    "field": popularity_field,
                    "modifier": modifier,
                    "factor": 1.0,
                    "missing": 0,
                },
                "weight": popularity_weight,
            }
        )
    if not functions:
        return base
    return {"function_score": {"query": base, "functions": functions, "boost_mode": "sum"}}


def scored_ids(scores: Sequence[tuple[str, float]]) -> Query:
    """Exactly these ids, each scoring its score over the best one's (in (0, 1])."""
    top = max((s for _, s in scores), default=0.0)
    if top <= 0:
        return {"ids": {"values": []}}
    return {
        "bool": {
            "should": [
                {"constant_score": {"filter": {"ids": {"values": [i]}}, "boost": s / top}}
                for i, s in scores
            ],
            "minimum_should_match": 1,
        }
    }


def similar_query(
    index: str, item: str, source: Mapping[str, Any], weights: Mapping[str, float]
) -> Query:
    """Attribute similarity: more_like_this on the item's text, plus W_a per shared value."""
    values = {
        attr: [str(v) for v in (raw if isinstance(raw, list) else [raw]) if v is not None]
        for attr, raw in source.items()
        if attr in weights
    }
    should: list[Query] = favored_clauses(values, weights)
    text = [f for f in TEXT_FIELDS if isinstance(source.get(f), str)]
    if text:
        should.append(
            {
                "more_like_this": {
                    "fields": text,
                    "like": [{"_index": index, "_id": item}],
                    "min_term_freq": 1,
                    "min_doc_freq": 1,
                }
            }
        )
    if not should:
        return {"ids": {"values": []}}
    return {"bool": {"should": should, "minimum_should_match": 1}}


# --------------------------------------------------------------------------- events bodies
def _interactions(*clauses: Query) -> Query:
    """Events that are interactions: impressions (a carousel or banner shown) are not
    (events/event.py TRACKING_EVENT_TYPES)."""
    return {
        "bool": {
            "filter": list(clauses),
            "must_not": [{"terms": {"type": ["impression"]}}],
        }
    }


def user_items_body(pseudonym: str, purchase_type: str = "purchase") -> dict[str, Any]:
    """The items a user has events for (most recent first) and those they bought."""
    return {
        "size": 0,
        "query": _interactions({"term": {"user_id": pseudonym}}),
        "aggs": {
            "seen": {
                "terms": {"field": "item_id", "size": SEEN_LIMIT, "order": {"last": "desc"}},
                "aggs": {"last": {"max": {"field": "timestamp"}}},
            },
            "bought": {
                "filter": {"term": {"type": purchase_type}},
                "aggs": {"items": {"terms": {"field": "item_id", "size": SEEN_LIMIT}}},
            },
        },
    }


def recent_items_body(pseudonym: str, size: int) -> dict[str, Any]:
    """The user's last `size` distinct items, newest first."""
    return {
        "size": size,
        "query": _interactions({"term": {"user_id": pseudonym}}),
        "sort": [{"timestamp": "desc"}],
        "collapse": {"field": "item_id"},
        "_source": ["item_id", "timestamp"],
    }


def latest_event_body() -> dict[str, Any]:
    return {"size": 0, "aggs": {"latest": {"max": {"field": "timestamp"}}}}


def trending_aggs(until: float, candidates: int = TRENDING_CANDIDATES) -> dict[str, Any]:
    """Per item, events in the last day before `until` and in the week before that; the rise
    is the last day's count minus the week's daily mean, computed and sorted by OpenSearch
    (bucket_script, bucket_sort); only items that rose."""
    day_start = until - DAY
    return {
        "size": 0,
        "query": _interactions({"range": {"timestamp": {"gte": until - 8 * DAY, "lte": until}}}),
        "aggs": {
            "items": {
                "terms": {"field": "item_id", "size": candidates * 5},
                "aggs": {
                    "recent": {"filter": {"range": {"timestamp": {"gte": day_start}}}},
                    "rise": {
                        "bucket_script": {
                            "buckets_path": {"recent": "recent._count", "all": "_count"},
                            "script": "params.recent - (params.all - params.recent) / 7.0",
                        }
                    },
                    "rising": {
                        "bucket_selector": {
                            "buckets_path": {"rise": "rise"},
                            "script": "params.rise > 0",
                        }
                    },
                    "top": {"bucket_sort": {"sort": [{"rise": "desc"}], "size": candidates}},
                },
            }
        },
    }


def trending_from(response: Mapping[str, Any]) -> list[tuple[str, float]]:
    buckets = response.get("aggregations", {}).get("items", {}).get("buckets", [])
    return [(str(b["key"]), float(b["rise"]["value"])) for b in buckets]


def recency_scores(items: Sequence[str]) -> list[tuple[str, float]]:
    """Newest first: n, n − 1, ... 1 (scored_ids then scales to (0, 1])."""
    return [(item, float(len(items) - n)) for n, item in enumerate(items)]
