"""Bulk loading into OpenSearch: catalog records (and, via events_ingest, events).

Parsing lives in events/formats.py and validation in events/event.py (both pure); this module only
streams validated records to `_bulk`, counts, and collects every rejection with its line
number and reason. A record the engine refuses (a mapping conflict, say) is a rejection too,
never a silent drop.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from opensearchpy import OpenSearch, helpers

from rewriter.events import event, formats

CATALOG_FORMATS = ("jsonl", "csv", "movielens")


@dataclass
class IngestResult:
    """Counts of one load, and every rejection as `line N: reason`."""

    loaded: int = 0
    rejected: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.rejected


def guess_format(path: Path) -> str:
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if path.name == "movies.csv":
        return "movielens"
    return "csv"


def _movielens_catalog(lines: Iterable[str]) -> formats.CatalogParsed:
    reader = csv.DictReader(lines)
    for offset, row in enumerate(reader):
        line_no = offset + 2  # header is line 1
        result = formats.movielens_movie(row)
        if isinstance(result, event.Rejection):
            result = event.Rejection(result.field, result.reason, line_no)
        yield line_no, result


def parse_catalog(
    path: Path, fmt: str, mapping: formats.FieldMapping | None
) -> formats.CatalogParsed:
    """Open `path` and yield (line, record | rejection) in its format."""
    handle = path.open(encoding="utf-8", newline="")
    if fmt == "jsonl":
        return formats.parse_catalog_jsonl(handle, mapping)
    if fmt == "csv":
        return formats.parse_catalog_csv(handle, mapping)
    if fmt == "movielens":
        return _movielens_catalog(handle)
    raise ValueError(f"unknown catalog format {fmt!r}; use one of {', '.join(CATALOG_FORMATS)}")


def _catalog_actions(
    parsed: formats.CatalogParsed, index: str, result: IngestResult, lines: dict[str, int]
) -> Iterator[dict]:
    for line_no, record in parsed:
        if isinstance(record, event.Rejection):
            result.rejected.append(str(record) if record.line else f"line {line_no}: {record}")
            continue
        lines[record.id] = line_no
        yield {"_op_type": "index", "_index": index, "_id": record.id, "_source": record.to_doc()}


class CatalogMissing(LookupError):
    """The target of a catalog load is neither an index nor an alias."""


def _writes_through_alias(es: OpenSearch, index: str) -> bool:
    """True when `index` is an alias, False when it is an index; CatalogMissing when neither,
    since writing to it would create an index with OpenSearch's dynamic mapping (text where
    affinity needs keywords, a replica on a one-node cluster), where personalization cannot
    work."""
    if es.indices.exists_alias(name=index):
        return True
    if es.indices.exists(index=index):
        return False
    raise CatalogMissing(
        f"{index!r} is neither an index nor an alias in OpenSearch, and loading into it would "
        "create it with dynamic mapping, on which personalization cannot work: run "
        f"`affinity bootstrap` to create the catalog alias, or create {index!r} with the "
        "mapping of index_templates/catalog.json."
    )


def load_catalog(
    es: OpenSearch,
    index: str,
    parsed: formats.CatalogParsed,
    progress: Callable[[int], None] = lambda n: None,
    chunk_size: int = 2000,
) -> IngestResult:
    """Index every valid record (doc id = item id); refresh at the end so it is searchable.

    `index` must exist (CatalogMissing otherwise). An alias must stay one while the load runs
    (`require_alias`): if it is removed meanwhile, the records are refused, not written into a
    new index with dynamic mapping."""
    alias = _writes_through_alias(es, index)
    result = IngestResult()
    lines: dict[str, int] = {}
    actions = _catalog_actions(parsed, index, result, lines)
    for ok, item in helpers.streaming_bulk(
        es,
        actions,
        chunk_size=chunk_size,
        raise_on_error=False,
        raise_on_exception=False,
        max_retries=3,
        require_alias=alias,
    ):
        info = item.get("index", {})
        if ok:
            result.loaded += 1
        else:
            error = info.get("error", {})
            reason = error.get("reason", error) if isinstance(error, dict) else error
            result.rejected.append(
                f"line {lines.get(info.get('_id', ''), '?')}: item {info.get('_id')}: "
                f"OpenSearch refused it: {reason}"
            )
        progress(1)
    es.indices.refresh(index=index)
    return result
