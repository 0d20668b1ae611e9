"""The engine side of `affinity boost check`: the live mapping and pinned items of the index a
boost profile ranks, as the `CatalogView` that rewriter/boost/checker.py checks files against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as EngineUnreachable
from opensearchpy.exceptions import NotFoundError, TransportError

from rewriter.boost.checker import CatalogLookup, CatalogView, flatten_mapping
from rewriter.boost.profile import BoostProfile
from rewriter.boost.yaml_fields import Ref


def engine_catalog(es: OpenSearch, index_for: Callable[[BoostProfile], str]) -> CatalogLookup:
    """A CatalogLookup that asks the engine (mapping cached per index)."""
    mappings: dict[str, dict[str, str] | str] = {}

    def lookup(profile: BoostProfile) -> CatalogView | str:
        index = index_for(profile)
        if index not in mappings:
            mappings[index] = _mapping(es, index)
        fields = mappings[index]
        if isinstance(fields, str):
            return fields
        return CatalogView(index, fields, _existing(es, index, _item_ids(profile.refs)))

    return lookup


def _mapping(es: OpenSearch, index: str) -> dict[str, str] | str:
    try:
        return flatten_mapping(es.indices.get_mapping(index=index))
    except NotFoundError:
        return f"index {index!r} does not exist (load the catalog, or pass --index)"
    except EngineUnreachable as exc:
        return f"OpenSearch is unreachable ({exc.__class__.__name__}); pass --offline to skip"
    except TransportError as exc:
        return f"OpenSearch refused the mapping request for {index!r}: {exc}"
    except Exception as exc:  # connection errors of any transport
        return f"OpenSearch is unreachable ({exc.__class__.__name__}); pass --offline to skip"


def _item_ids(refs: Iterable[Ref]) -> list[str]:
    return sorted({r.name for r in refs if r.kind == "item"})


def _existing(es: OpenSearch, index: str, ids: list[str]) -> frozenset[str]:
    if not ids:
        return frozenset()
    body = {"query": {"ids": {"values": ids}}, "size": len(ids), "_source": False}
    hits = es.search(index=index, body=body)["hits"]["hits"]
    return frozenset(h["_id"] for h in hits)
