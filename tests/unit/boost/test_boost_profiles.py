"""Boost profiles: shipped files, defaults, versions, and errors that point at file:line:col."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import yaml

from rewriter.boost.profile import (
    CLIENT_ATTRIBUTES_KEYS,
    COLD_START_KEYS,
    PROFILE_KEYS,
    BoostProfile,
    BoostProfileError,
    ColdStart,
    load_boost_profile,
    load_boost_profiles,
    parse_boost_profile,
)

PROFILES = Path(__file__).resolve().parents[3] / "profiles"


def _error(text: str) -> BoostProfileError:
    with pytest.raises(BoostProfileError) as info:
        parse_boost_profile(text, source="shop.yaml")
    return info.value


def test_default_yaml_equals_the_built_in_defaults() -> None:
    loaded = load_boost_profile(PROFILES / "default.yaml")
    built_in = BoostProfile(name="default", version=loaded.version, source=loaded.source)
    assert loaded == built_in


def test_default_yaml_sets_and_documents_every_key() -> None:
    text = (PROFILES / "default.yaml").read_text()
    data = yaml.safe_load(text)
    assert set(data) == set(PROFILE_KEYS)
    assert set(data["cold_start"]) == set(COLD_START_KEYS)
    assert set(data["client_attributes"]) == set(CLIENT_ATTRIBUTES_KEYS)
    lines = text.splitlines()
    for key in PROFILE_KEYS + COLD_START_KEYS + CLIENT_ATTRIBUTES_KEYS:
        at = next(i for i, line in enumerate(lines) if re.match(rf"^\s*{key}:", line))
        assert lines[at - 1].lstrip().startswith("#"), f"default.yaml: {key} has no comment"


def test_movielens_profile() -> None:
    profile = load_boost_profile(PROFILES / "movielens.yaml")
    assert profile.name == "movielens"
    assert profile.attributes == {"category": 1.0}
    assert profile.event_weights == {"rating_high": 5.0, "rating_low": 0.5, "view": 1.0}


def test_load_directory_by_name() -> None:
    assert set(load_boost_profiles(PROFILES)) >= {"default", "movielens"}


def test_duplicate_names_in_a_directory(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: shop\n")
    (tmp_path / "b.yaml").write_text("name: shop\n")
    with pytest.raises(BoostProfileError, match=r"b\.yaml:1:1: .*already used by .*a\.yaml"):
        load_boost_profiles(tmp_path)


def test_version_is_a_content_hash() -> None:
    text = "name: shop\nalpha: 2\n"
    profile = parse_boost_profile(text)
    assert profile.version == hashlib.sha256(text.encode()).hexdigest()[:12]
    assert parse_boost_profile(text + "# comment\n").version != profile.version


def test_values_and_replacing_mappings() -> None:
    profile = parse_boost_profile(
        "name: shop\nalpha: 2\nshape: function_score\nwindow: 250\nk: 0\n"
        "attributes: {color: 0.5}\nevent_weights: {view: 1}\n"
        "cold_start: {strategy: none, popularity_weight: 0.25, modifier: sqrt}\n"
    )
    assert (profile.alpha, profile.shape, profile.window, profile.k) == (
        2.0,
        "function_score",
        250,
        0.0,
    )
    assert profile.attributes == {"color": 0.5}
    assert profile.event_weights == {"view": 1.0}
    assert profile.cold_start == ColdStart("none", 0.25, "sqrt")


def test_client_attributes_name_the_event_sources_allowed_to_send_them() -> None:
    """By default attributes come from the catalog only; a profile may let named sources
    (POST /events is `api`, imports their --format) send them for items not in it."""
    assert BoostProfile(name="shop").client_attributes.sources == ()
    profile = parse_boost_profile("name: shop\nclient_attributes:\n  sources: [segment, api]\n")
    assert profile.client_attributes.sources == ("segment", "api")
    assert profile.client_attributes.allows("segment")
    assert not profile.client_attributes.allows("csv")


def test_the_sources_a_profile_can_trust_are_the_ways_events_arrive() -> None:
    from rewriter.boost.profile import EVENT_SOURCES
    from rewriter.ingest.event_files import EVENT_FORMATS

    assert set(EVENT_SOURCES) == {"api", *EVENT_FORMATS}


def test_unknown_key_suggests_the_closest_and_names_the_line() -> None:
    error = _error("name: shop\n\nalpah: 2\n")
    assert (error.source, error.line, error.column) == ("shop.yaml", 3, 1)
    assert str(error).startswith("shop.yaml:3:1: unknown key 'alpah'")
    assert "did you mean 'alpha'?" in str(error)


def test_unknown_nested_key() -> None:
    error = _error("name: shop\ncold_start:\n  stratgey: none\n")
    assert str(error).startswith("shop.yaml:3:3: cold_start: unknown key 'stratgey'")
    assert "did you mean 'strategy'?" in str(error)


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("name: shop\nalpha: -1\n", "2:8", "alpha: must be >= 0"),
        ("name: shop\nalpha: yes\n", "2:8", "alpha: expected a number"),
        ("name: shop\nalpha: .nan\n", "2:8", "finite"),
        ("name: shop\nwindow: 0\n", "2:9", "window: must be between 1 and 10000"),
        ("name: shop\nwindow: 20000\n", "2:9", "between 1 and 10000"),
        ("name: shop\ntop_k: 2.5\n", "2:8", "top_k: expected a whole number"),
        ("name: shop\nhalf_life_days: 0\n", "2:17", "must be > 0"),
        ("name: shop\nshape: rescor\n", "2:8", "did you mean 'rescore'?"),
        ("name: shop\nattributes:\n  brand: -2\n", "3:10", "attributes.brand: must be >= 0"),
        ("name: shop\nattributes: {}\n", "2:13", "must not be empty"),
        ("name: shop\nattributes: [brand]\n", "2:13", "must be a mapping"),
        ("name: shop\ncold_start: {strategy: off}\n", "2:24", "cold_start.strategy"),
        ("name: shop\nname: other\n", "2:1", "duplicate key 'name'"),
        ("name: [a]\n", "1:7", "expected a single value"),
        ("alpha: 1\n", "1:1", "missing required key 'name'"),
        ("", "1:1", "empty boost profile"),
        ("- name\n", "1:1", "must be a mapping"),
        ("name: shop\nalpha: [1\n", "3:1", "invalid YAML"),
        (
            "name: shop\nclient_attributes:\n  sources: [api, segmnet]\n",
            "3:18",
            "client_attributes.sources[1]: expected one of api, jsonl, csv, segment, ubi",
        ),
        ("name: shop\nclient_attributes:\n  sources: api\n", "3:12", "must be a list"),
        ("name: shop\nclient_attributes:\n  source: [api]\n", "3:3", "unknown key 'source'"),
        ("name: shop\nclient_attributes: [api]\n", "2:20", "must be a mapping"),
    ],
)
def test_errors_name_file_line_and_column(text: str, where: str, fragment: str) -> None:
    message = str(_error(text))
    assert message.startswith(f"shop.yaml:{where}: "), message
    assert fragment in message
