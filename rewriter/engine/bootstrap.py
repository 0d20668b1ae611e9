"""Bootstrap of index templates and stored scripts, and reindexing.

Bootstrap is idempotent: each template in index_templates/ becomes an index template plus a
versioned index (`<alias>-v<version>`) behind an alias; each painless/*.painless file becomes
a stored script named after the file. A second run changes nothing and says so. A template
whose content changed is reported with what to do (bump its version and reindex).
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


TEMPLATE_NAMES = ("catalog", "profiles", "events", "impressions", "journal", "retired")


@dataclass(frozen=True)
class Template:
    name: str
    version: int
    body: dict
    digest: str


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
    meta = {"affinity_template": t.name, "digest": t.digest, "version": t.version}
    try:
        existing = es.indices.get_index_template(name=template_name)["index_templates"][0]
        stored = existing["index_template"].get("_meta", {})
    except NotFoundError:
        stored = {}
    targets = _alias_targets(es, alias)
    if targets and targets != [index]:
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
        return f"{t.name}: unchanged ({alias} -> {index})"
    es.indices.put_index_template(
        name=template_name,
        body={
            "index_patterns": [f"{alias}-v*"],
            "template": t.body,
            "version": t.version,
            "_meta": meta,
            "priority": 100,
        },
    )
    if not targets:
        if not es.indices.exists(index=index):
            es.indices.create(index=index, body={"aliases": {alias: {"is_write_index": True}}})
        else:
            es.indices.put_alias(index=index, name=alias)
        return f"{t.name}: created {index} behind alias {alias}"
    return f"{t.name}: recorded template for {index}"


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
    if old == [new]:
        # Same version, changed content: move to a fresh physical index with a suffix.
        new = f"{alias}-v{t.version}-{int(time.time())}"
    es.indices.put_index_template(
        name=f"{alias}-template",
        body={
            "index_patterns": [f"{alias}-v*"],
            "template": t.body,
            "version": t.version,
            "_meta": {"affinity_template": name, "digest": t.digest, "version": t.version},
            "priority": 100,
        },
    )
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
