"""Bootstrap of index templates and stored scripts, and reindexing.

Bootstrap is idempotent: each template in index_templates/ becomes an index template plus a
versioned index (`<alias>-v<version>`) behind an alias; each painless/*.painless file becomes
a stored script named after the file. A second run changes nothing and says so. A template
whose content changed is reported with what to do (bump its version and reindex).

Shards and replicas are settings (AFFINITY_SHARDS, AFFINITY_REPLICAS; `index_layout`), laid
over the templates' own counts: replicas are changed in place on an existing index; a
different shard count needs a reindex, and bootstrap says which.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from opensearchpy import OpenSearch
from opensearchpy.exceptions import NotFoundError

from rewriter.config import ROOT, Settings

TEMPLATES_DIR = ROOT / "index_templates"


PAINLESS_DIR = ROOT / "painless"


TEMPLATE_NAMES = (
    "catalog",
    "profiles",
    "events",
    "impressions",
    "journal",
    "retired",
    "changes",
)


SHARDED = ("catalog", "profiles")
"""The indices AFFINITY_SHARDS splits: every search reads them and they grow with the catalog
and the users. The events log, impressions and the journal keep one primary each (append
logs read by user or by batch); AFFINITY_REPLICAS copies every index."""


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    body: dict
    digest: str
    """Of the file's settings and mappings: what tells a changed template file."""


def index_layout(t: Template, settings: Settings) -> tuple[int, int]:
    """(primary shards, replicas) of `t`'s index: AFFINITY_SHARDS (catalog and profiles only)
    and AFFINITY_REPLICAS where set, else the template file's counts."""
    own = t.body["settings"]
    shards = settings.shards if settings.shards and t.name in SHARDED else own["number_of_shards"]
    replicas = own["number_of_replicas"] if settings.replicas is None else settings.replicas
    return int(shards), int(replicas)


def _template_body(t: Template, settings: Settings) -> dict:
    shards, replicas = index_layout(t, settings)
    index = {**t.body["settings"], "number_of_shards": shards, "number_of_replicas": replicas}
    return {**t.body, "settings": index}


def _put_template(es: OpenSearch, settings: Settings, t: Template) -> None:
    """The index template every `<alias>-v*` index of `t` is created from."""
    alias = settings.indices.alias(t.name)
    es.indices.put_index_template(
        name=f"{alias}-template",
        body={
            "index_patterns": [f"{alias}-v*"],
            "template": _template_body(t, settings),
            "version": t.version,
            "_meta": {"affinity_template": t.name, "digest": t.digest, "version": t.version},
            "priority": 100,
        },
    )


def load_templates(directory: Path = TEMPLATES_DIR) -> list[Template]:
    out = []
    for name in TEMPLATE_NAMES:
        path = directory / f"{name}.json"
        raw = json.loads(path.read_text())
        body = {"settings": raw["settings"], "mappings": raw["mappings"]}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        out.append(Template(name, int(raw["version"]), body, digest))
    return out


def load_scripts(directory: Path = PAINLESS_DIR) -> dict[str, str]:
    return {p.stem: p.read_text() for p in sorted(directory.glob("*.painless"))}


def _alias_targets(es: OpenSearch, alias: str) -> list[str]:
    try:
        return sorted(es.indices.get_alias(name=alias).keys())
    except NotFoundError:
        return []


def missing_aliases(es: OpenSearch, settings: Settings) -> list[str]:
    """The aliases of affinity's indices (one per template) that do not exist: all of them on a
    cluster never bootstrapped under this prefix, none after `bootstrap_cluster`."""
    wanted = [settings.indices.alias(name) for name in TEMPLATE_NAMES]
    found = es.indices.get_alias(name=",".join(wanted), ignore=404)
    present = {
        alias
        for entry in found.values()
        if isinstance(entry, dict)
        for alias in entry.get("aliases", {})
    }
    return [alias for alias in wanted if alias not in present]


def _bootstrap_template(es: OpenSearch, settings: Settings, t: Template) -> str:
    alias = settings.indices.alias(t.name)
    index = f"{alias}-v{t.version}"
    template_name = f"{alias}-template"
    try:
        existing = es.indices.get_index_template(name=template_name)["index_templates"][0]
        stored = existing["index_template"].get("_meta", {})
    except NotFoundError:
        stored = {}
    targets = _alias_targets(es, alias)
    if targets and not _same_version(targets, index):
        return (
            f"{t.name}: alias {alias} points at {', '.join(targets)} but the template is at "
            f"v{t.version}: run `affinity bootstrap --reindex {t.name}` to copy the data into "
            f"{index} and move the alias."
        )
    if targets and stored.get("digest") not in (None, t.digest):
        return (
            f"{t.name}: index_templates/{t.name}.json changed since {index} was created: bump its "
            f'"version" to {t.version + 1}, then run `affinity bootstrap --reindex {t.name}`.'
        )
    if targets and stored.get("digest") == t.digest:
        return _match_layout(es, settings, t, targets[0])
    _put_template(es, settings, t)
    if not targets:
        if not es.indices.exists(index=index):
            es.indices.create(index=index, body={"aliases": {alias: {"is_write_index": True}}})
        else:
            es.indices.put_alias(index=index, name=alias)
        return f"{t.name}: created {index} behind alias {alias}"
    return f"{t.name}: recorded template for {index}"


def _same_version(targets: list[str], index: str) -> bool:
    """The alias points at the template version's index, or at the copy a reindex of the same
    version made (`<index>-<time>`)."""
    return len(targets) == 1 and (targets[0] == index or targets[0].startswith(f"{index}-"))


def _match_layout(es: OpenSearch, settings: Settings, t: Template, index: str) -> str:
    """An existing index against AFFINITY_SHARDS / AFFINITY_REPLICAS: replicas are set in
    place; a different shard count is reported with the reindex that changes it."""
    alias = settings.indices.alias(t.name)
    shards, replicas = index_layout(t, settings)
    current = es.indices.get_settings(index=index, name="index.number_of_*")[index]
    has = current["settings"]["index"]
    if int(has["number_of_shards"]) != shards:
        return (
            f"{t.name}: {index} has {has['number_of_shards']} primary shard(s), the settings ask "
            f"for {shards} (AFFINITY_SHARDS): run `affinity bootstrap --reindex {t.name}` to copy "
            f"it into a new index with {shards} and move the alias."
        )
    if int(has["number_of_replicas"]) == replicas:
        return f"{t.name}: unchanged ({alias} -> {index})"
    es.indices.put_settings(index=index, body={"index": {"number_of_replicas": replicas}})
    _put_template(es, settings, t)
    return f"{t.name}: replicas of {index} set to {replicas} (were {has['number_of_replicas']})"


def _bootstrap_script(es: OpenSearch, script_id: str, source: str) -> str:
    try:
        current = es.get_script(id=script_id)["script"]["source"]
    except NotFoundError:
        current = None
    if current == source:
        return f"script {script_id}: unchanged"
    es.put_script(id=script_id, body={"script": {"lang": "painless", "source": source}})
    return f"script {script_id}: {'updated' if current else 'stored'}"


@dataclass(frozen=True)
class BootstrapReport:
    lines: list[str]

    @property
    def changed(self) -> bool:
        return any(not line.split(": ", 1)[1].startswith("unchanged") for line in self.lines)

    @property
    def needs_action(self) -> list[str]:
        return [line for line in self.lines if "run `affinity bootstrap --reindex" in line]


def bootstrap_cluster(es: OpenSearch, settings: Settings) -> BootstrapReport:
    """Apply templates, aliases and stored scripts. Idempotent."""
    lines = [_bootstrap_template(es, settings, t) for t in load_templates()]
    lines += [_bootstrap_script(es, sid, src) for sid, src in load_scripts().items()]
    return BootstrapReport(lines)


def reindex(es: OpenSearch, settings: Settings, name: str) -> str:
    """Copy `name`'s data into the index of the template's current version; move the alias."""
    t = next(t for t in load_templates() if t.name == name)
    alias = settings.indices.alias(name)
    old = _alias_targets(es, alias)
    new = f"{alias}-v{t.version}"
    if _same_version(old, new):
        # Same version, changed content or shard count: a fresh physical index with a suffix.
        new = f"{alias}-v{t.version}-{int(time.time())}"
    _put_template(es, settings, t)
    es.indices.create(index=new)
    if old:
        es.reindex(
            body={"source": {"index": old}, "dest": {"index": new}},
            refresh=True,
            wait_for_completion=True,
        )
    actions = [{"remove": {"index": o, "alias": alias}} for o in old]
    actions.append({"add": {"index": new, "alias": alias, "is_write_index": True}})
    es.indices.update_aliases(body={"actions": actions})
    return f"{name}: reindexed {', '.join(old) or '(nothing)'} into {new}; {alias} -> {new}"
