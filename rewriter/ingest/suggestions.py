"""`affinity suggestions build`: a catalog's suggestions index, built inside OpenSearch
(issue 11, item 1; served by serve/suggest.py, searched as ranking/suggest.py says).

Sources:
- queries users ran on the catalog (the impressions log, within `since`): a query enters
  only when at least `min_users` distinct users ran it, it does not look like an e-mail
  address, a phone number or a long digit string, no deny-list entry is in it
  (boost/deny_list.py), and it finds something in the catalog;
- the catalog itself, so a new shop has suggestions on day one: every title, and every
  value of the boost profile's attributes (brand, category, ...).

Each record: `text`, `kind` (query, title, brand, category, or the attribute's name),
`popularity` (distinct users: of the query, or with events on the items it leads to; never
raw counts, so one user cannot push a suggestion), `result_count`, and the top values of
each attribute among the items it leads to, in fields named like the catalog's, which the
`affinity` script scores. A build writes a new index `<alias>-v<ms>` and swaps the alias
atomically, then deletes the older versions: searches keep working throughout.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from rewriter import config
from rewriter.boost.deny_list import denied
from rewriter.ranking.reference import POPULARITY_FIELD
from rewriter.ranking.suggest import TEXT_FIELD, suggestions_index

DEFAULT_MIN_USERS = 3
DEFAULT_SINCE_S = 30 * 86400.0
TOP_VALUES = 3
MAX_QUERY_CHARS = 100
PAGE = 5000

_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_PHONE = re.compile(r"(?:\+|\b)\d[\d\s().-]{6,}\d\b")
_DIGITS = re.compile(r"\d{6,}")
_SEPARATOR = re.compile(r"[\s().+-]")


def private_reason(text: str) -> str | None:
    """Why a query must never be suggested (it may identify a person), or None."""
    if _EMAIL.search(text):
        return "e-mail address"
    for match in _PHONE.finditer(text):
        chunk = match.group()
        if sum(c.isdigit() for c in chunk) >= 7 and _SEPARATOR.search(chunk):
            return "phone number"
    if _DIGITS.search(text):
        return "long digit string"
    return None


def normalized(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class BuildConfig:
    index: str
    attributes: tuple[str, ...]
    since_s: float = DEFAULT_SINCE_S
    min_users: int = DEFAULT_MIN_USERS
    deny: tuple[str, ...] = ()


@dataclass
class BuildReport:
    alias: str
    index: str = ""
    replaced: list[str] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    candidates: int = 0

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.kinds.items())) or "nothing"
        dropped = ", ".join(f"{n} {why}" for why, n in sorted(self.dropped.items())) or "none"
        swapped = f" (replacing {', '.join(self.replaced)})" if self.replaced else ""
        return [
            f"suggestions: {kinds} -> {self.index}, alias {self.alias}{swapped}",
            f"queries: {self.candidates} distinct in the impressions; dropped: {dropped}",
        ]


def build(
    es: OpenSearch, settings: config.Settings, cfg: BuildConfig, now: float | None = None
) -> BuildReport:
    """Build the suggestions index of `cfg.index` and swap its alias (module doc)."""
    now = time.time() if now is None else now
    report = BuildReport(alias=suggestions_index(cfg.index))
    users_of_item = _users_per_item(es, settings.indices.events)
    docs = list(_catalog_suggestions(es, cfg, users_of_item))
    docs += _query_suggestions(es, settings, cfg, now, report)
    kept = _dedupe(docs)
    report.kinds.update(d["kind"] for d in kept)
    report.index = f"{report.alias}-v{int(now * 1000)}"
    es.indices.create(index=report.index, body=_index_body(cfg.attributes))
    actions = ({"_index": report.index, "_source": d} for d in kept)
    helpers.bulk(es, actions, chunk_size=2000, refresh="wait_for")
    report.replaced = _swap_alias(es, report.alias, report.index)
    return report


def _index_body(attributes: Sequence[str]) -> dict[str, Any]:
    props: dict[str, Any] = {
        TEXT_FIELD: {"type": "search_as_you_type"},
        "kind": {"type": "keyword"},
        POPULARITY_FIELD: {"type": "double"},
        "result_count": {"type": "long"},
    }
    props.update({a: {"type": "keyword"} for a in attributes})
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {"dynamic": False, "properties": props},
    }


def _swap_alias(es: OpenSearch, alias: str, index: str) -> list[str]:
    """Point `alias` at `index` only, in one atomic `_aliases` call; delete the old ones."""
    old = list(es.indices.get_alias(name=alias)) if es.indices.exists_alias(name=alias) else []
    actions: list[dict[str, Any]] = [{"remove": {"index": i, "alias": alias}} for i in old]
    actions.append({"add": {"index": index, "alias": alias}})
    es.indices.update_aliases(body={"actions": actions})
    for name in old:
        es.indices.delete(index=name, ignore_unavailable=True)
    return old


def _composite(
    es: OpenSearch, index: str, query: dict[str, Any], sources: Sequence[str]
) -> Iterator[dict[str, Any]]:
    """Every distinct combination of the `sources` fields, by composite aggregation."""
    after: dict[str, Any] | None = None
    while True:
        comp: dict[str, Any] = {
            "size": PAGE,
            "sources": [{s: {"terms": {"field": s}}} for s in sources],
        }
        if after:
            comp["after"] = after
        body = {"size": 0, "query": query, "aggs": {"pairs": {"composite": comp}}}
        agg = es.search(index=index, body=body)["aggregations"]["pairs"]
        yield from (b["key"] for b in agg["buckets"])
        after = agg.get("after_key")
        if not after or not agg["buckets"]:
            return


def _users_per_item(es: OpenSearch, events: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for key in _composite(es, events, {"match_all": {}}, ["item_id", "user_id"]):
        out[str(key["item_id"])].add(str(key["user_id"]))
    return out


def _catalog_suggestions(
    es: OpenSearch, cfg: BuildConfig, users_of_item: Mapping[str, set[str]]
) -> Iterator[dict[str, Any]]:
    """A title per item, and a suggestion per attribute value."""
    by_value: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    query = {"query": {"match_all": {}}, "_source": ["title", *cfg.attributes]}
    for hit in helpers.scan(es, index=cfg.index, query=query, size=2000):
        source = hit["_source"]
        values = {a: _values(source.get(a)) for a in cfg.attributes}
        users = users_of_item.get(hit["_id"], set())
        item = {"users": users, "values": values}
        title = source.get("title")
        if isinstance(title, str) and title.strip():
            yield {
                TEXT_FIELD: title.strip(),
                "kind": "title",
                POPULARITY_FIELD: float(len(users)),
                "result_count": 1,
                **{a: v for a, v in values.items() if v},
            }
        for attribute, vs in values.items():
            for v in vs:
                by_value[(attribute, v)].append(item)
    for (attribute, value), items in by_value.items():
        users = set().union(*(i["users"] for i in items))
        yield {
            TEXT_FIELD: value,
            "kind": attribute,
            POPULARITY_FIELD: float(len(users)),
            "result_count": len(items),
            **_top_values([i["values"] for i in items], cfg.attributes),
            attribute: [value],
        }


def _values(raw: Any) -> list[str]:
    items = raw if isinstance(raw, list) else [raw]
    return [str(v) for v in items if v is not None and str(v).strip()]


def _top_values(
    values: Sequence[Mapping[str, list[str]]], attributes: Sequence[str]
) -> dict[str, list[str]]:
    out = {}
    for a in attributes:
        counts = Counter(v for item in values for v in item.get(a, []))
        top = [v for v, _ in sorted(counts.items(), key=lambda vc: (-vc[1], vc[0]))[:TOP_VALUES]]
        if top:
            out[a] = top
    return out


def _query_suggestions(
    es: OpenSearch,
    settings: config.Settings,
    cfg: BuildConfig,
    now: float,
    report: BuildReport,
) -> list[dict[str, Any]]:
    """The queries that pass the privacy and hygiene rules, with what they lead to."""
    window = {
        "bool": {
            "filter": [
                {"term": {"index": cfg.index}},
                {"range": {"timestamp": {"gte": now - cfg.since_s}}},
            ]
        }
    }
    users: dict[str, set[str]] = defaultdict(set)
    spelled: dict[str, Counter[str]] = defaultdict(Counter)
    for key in _composite(es, settings.indices.impressions, window, ["query.raw", "user_id"]):
        text = " ".join(str(key["query.raw"]).split())
        users[normalized(text)].add(str(key["user_id"]))
        spelled[normalized(text)][text] += 1
    report.candidates = len(users)
    passing = []
    for norm, who in users.items():
        text = spelled[norm].most_common(1)[0][0]
        why = _refused(text, len(who), cfg)
        if why:
            report.dropped[why] += 1
        else:
            passing.append((text, len(who)))
    return _with_results(es, cfg, passing, report)


def _refused(text: str, n_users: int, cfg: BuildConfig) -> str | None:
    if n_users < cfg.min_users:
        return f"below {cfg.min_users} distinct users"
    if len(text) > MAX_QUERY_CHARS:
        return "too long"
    private = private_reason(text)
    if private:
        return private
    if denied(text, cfg.deny):
        return "on the deny list"
    return None


def _with_results(
    es: OpenSearch, cfg: BuildConfig, queries: Sequence[tuple[str, int]], report: BuildReport
) -> list[dict[str, Any]]:
    """Each query's result count and top attribute values (an _msearch per 100 queries);
    queries with no results are dropped."""
    out = []
    for start in range(0, len(queries), 100):
        chunk = queries[start : start + 100]
        lines: list[dict[str, Any]] = []
        for text, _ in chunk:
            lines += [{"index": cfg.index}, _results_body(text, cfg.attributes)]
        responses = es.msearch(body=lines)["responses"]
        for (text, n_users), resp in zip(chunk, responses, strict=True):
            total = (resp.get("hits") or {}).get("total", {}).get("value", 0)
            if not total:
                report.dropped["no results"] += 1
                continue
            aggs = resp.get("aggregations") or {}
            tops = {
                a: [b["key"] for b in aggs[a]["buckets"]]
                for a in cfg.attributes
                if aggs.get(a, {}).get("buckets")
            }
            out.append(
                {
                    TEXT_FIELD: text,
                    "kind": "query",
                    POPULARITY_FIELD: float(n_users),
                    "result_count": total,
                    **tops,
                }
            )
    return out


def _results_body(text: str, attributes: Sequence[str]) -> dict[str, Any]:
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {
            "multi_match": {
                "query": text,
                "fields": ["title", *attributes],
                "operator": "and",
                "lenient": True,
            }
        },
        "aggs": {a: {"terms": {"field": a, "size": TOP_VALUES}} for a in attributes},
    }


def _dedupe(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One suggestion per text (ignoring case): the most popular; on a tie, a query before
    a title before an attribute value."""
    order = {"query": 0, "title": 1}
    best: dict[str, dict[str, Any]] = {}
    for doc in docs:
        key = normalized(doc[TEXT_FIELD])
        have = best.get(key)
        rank = (-doc[POPULARITY_FIELD], order.get(doc["kind"], 2))
        if have is None or rank < (-have[POPULARITY_FIELD], order.get(have["kind"], 2)):
            best[key] = doc
    return list(best.values())
