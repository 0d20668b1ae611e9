"""`affinity bootstrap`: templates, versioned indices behind aliases, stored scripts."""

from __future__ import annotations

from dataclasses import replace

from opensearchpy import OpenSearch

from rewriter import config
from rewriter.engine.bootstrap import TEMPLATES_DIR, bootstrap_cluster, load_templates, reindex


def test_bootstrap_twice_changes_nothing(opensearch: OpenSearch, settings: config.Settings) -> None:
    s = replace(settings, indices=config.Indices(prefix=settings.indices.prefix + "boot-"))
    first = bootstrap_cluster(opensearch, s)
    assert first.changed
    assert any("created" in line for line in first.lines)
    second = bootstrap_cluster(opensearch, s)
    assert not second.changed, second.lines
    assert all("unchanged" in line for line in second.lines)
    aliases = opensearch.indices.get_alias(name=s.indices.catalog)
    assert list(aliases) == [f"{s.indices.catalog}-v1"]
    mapping = opensearch.indices.get_mapping(index=s.indices.profiles)
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["affinities"] == {"type": "object", "enabled": False}


def test_changed_template_is_reported_with_what_to_do(
    opensearch: OpenSearch, settings: config.Settings, monkeypatch
) -> None:
    s = replace(settings, indices=config.Indices(prefix=settings.indices.prefix + "chg-"))
    bootstrap_cluster(opensearch, s)
    original = load_templates

    def changed_templates(directory=TEMPLATES_DIR):
        out = original(directory)
        t = out[0]
        body = {**t.body, "settings": {**t.body["settings"], "refresh_interval": "5s"}}
        return [replace(t, body=body, digest="different"), *out[1:]]

    monkeypatch.setattr("rewriter.engine.bootstrap.load_templates", changed_templates)
    report = bootstrap_cluster(opensearch, s)
    assert report.needs_action
    assert 'bump its "version" to 2' in report.needs_action[0]
    assert "affinity bootstrap --reindex catalog" in report.needs_action[0]


def test_reindex_moves_alias_and_keeps_documents(
    opensearch: OpenSearch, settings: config.Settings
) -> None:
    s = replace(settings, indices=config.Indices(prefix=settings.indices.prefix + "rx-"))
    bootstrap_cluster(opensearch, s)
    opensearch.index(index=s.indices.catalog, id="a", body={"title": "x"}, refresh=True)
    message = reindex(opensearch, s, "catalog")
    assert "reindexed" in message
    targets = list(opensearch.indices.get_alias(name=s.indices.catalog))
    assert len(targets) == 1 and targets[0] != f"{s.indices.catalog}-v1"
    assert opensearch.get(index=s.indices.catalog, id="a")["_source"]["title"] == "x"


def test_shards_and_replicas_from_the_settings(
    opensearch: OpenSearch, settings: config.Settings
) -> None:
    """Replicas change in place; a different shard count is reported with the reindex, which
    makes the new index with it; then bootstrap has nothing left to do."""
    s = replace(
        settings,
        indices=config.Indices(prefix=settings.indices.prefix + "lay-"),
        shards=None,
        replicas=None,
    )
    bootstrap_cluster(opensearch, s)
    wider = replace(s, shards=3, replicas=1)
    report = bootstrap_cluster(opensearch, wider)
    assert [line.split(":")[0] for line in report.needs_action] == ["catalog", "profiles"]
    assert "run `affinity bootstrap --reindex catalog`" in report.needs_action[0]
    events = opensearch.indices.get_settings(index=s.indices.events)
    assert [v["settings"]["index"]["number_of_replicas"] for v in events.values()] == ["1"]

    opensearch.index(index=s.indices.catalog, id="a", body={"title": "x"}, refresh=True)
    reindex(opensearch, wider, "catalog")
    reindex(opensearch, wider, "profiles")
    again = bootstrap_cluster(opensearch, wider)
    assert not again.changed, again.lines
    catalog = opensearch.indices.get_settings(index=s.indices.catalog)
    assert [v["settings"]["index"]["number_of_shards"] for v in catalog.values()] == ["3"]
    assert opensearch.get(index=s.indices.catalog, id="a")["_source"]["title"] == "x"
