"""Autocomplete's pure parts: the prefix and size checks, the suggestion search, recent
searches, the merge (recent first, each text once), PII filters and the deny list."""

from __future__ import annotations

import pytest

from rewriter.boost.deny_list import denied, parse_deny_list
from rewriter.boost.yaml_fields import BoostProfileError
from rewriter.ingest.suggestions import private_reason
from rewriter.ranking import suggest as s


def test_prefixes_are_trimmed_and_bounded() -> None:
    assert s.clean_prefix("  the   ma ") == "the ma"
    assert s.clean_prefix(None) == "" and s.clean_prefix("ñ日本") == "ñ日本"
    with pytest.raises(s.SuggestError, match="q is 101 characters"):
        s.clean_prefix("x" * 101)
    with pytest.raises(s.SuggestError, match="control characters"):
        s.clean_prefix("a\tb")


@pytest.mark.parametrize("size", ["0", "51", "-3", "eight", "1e3"])
def test_sizes_outside_1_to_50_are_refused(size: str) -> None:
    with pytest.raises(s.SuggestError) as info:
        s.clean_size(size)
    assert info.value.field == "size"


def test_default_size_and_the_search_body() -> None:
    assert s.clean_size(None) == s.DEFAULT_SIZE == 8
    body = s.suggest_body("th", 8)
    query = body["query"]["function_score"]
    should = query["query"]["bool"]["should"]
    assert should[0]["multi_match"]["type"] == "bool_prefix"
    assert should[1]["match"]["text"]["fuzziness"] == "AUTO"
    assert query["functions"][0]["field_value_factor"]["field"] == "popularity"


def test_recent_texts_are_distinct_ignoring_case_newest_first() -> None:
    response = {
        "hits": {
            "hits": [
                {"_source": {"query": "The Matrix"}},
                {"_source": {"query": "the matrix"}},
                {"_source": {"query": "  "}},
                {"_source": {}},
                {"_source": {"query": "Heat"}},
            ]
        }
    }
    assert s.recent_texts(response) == ["The Matrix", "Heat"]
    assert s.wants_recent("") and s.wants_recent("th") and not s.wants_recent("the")


def test_merge_puts_recent_first_and_each_text_once() -> None:
    hits = [
        {"_id": "1", "_score": 3.0, "_source": {"text": "the matrix", "kind": "title"}},
        {"_id": "2", "_score": 2.0, "_source": {"text": "Thor", "kind": "title", "brand": ["x"]}},
        {"_id": "3", "_score": 1.0, "_source": {"text": "thor", "kind": "query"}},
    ]
    merged = s.merge_suggestions(["The Matrix"], hits, ["brand"], size=8)
    assert [(m["text"], m["kind"]) for m in merged] == [
        ("The Matrix", "recent"),
        ("Thor", "title"),
    ]
    assert merged[1]["brand"] == ["x"] and merged[1]["id"] == "2"
    assert len(s.merge_suggestions([], hits, [], size=1)) == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("jane.doe@example.com", "e-mail address"),
        ("mail me at a@b.de please", "e-mail address"),
        ("+49 176 1234567", "phone number"),
        ("(030) 123-4567", "phone number"),
        ("order 88812345", "long digit string"),
        ("2001 a space odyssey", None),
        ("top 10 of 2019", None),
        ("iphone 15 pro", None),
    ],
)
def test_private_queries(text: str, why: str | None) -> None:
    assert private_reason(text) == why


def test_deny_list_matches_whole_words_ignoring_case() -> None:
    deny = parse_deny_list("deny:\n  - casino\n  - free money\n")
    assert deny == ("casino", "free money")
    assert denied("Casino Royale", deny) == "casino"
    assert denied("casinos", deny) is None
    assert denied("get FREE money now", deny) == "free money"
    assert denied("money for free", deny) is None


def test_deny_list_mistakes_are_named_at_their_line() -> None:
    with pytest.raises(BoostProfileError) as info:
        parse_deny_list("deny:\n  - ok\n  - {a: 1}\n  - '!!'\ndenny: []\n", source="d.yaml")
    errors = [str(e) for e in info.value.errors]
    assert any(e.startswith("d.yaml:3:5: deny[1]:") for e in errors), errors
    assert any(e.startswith("d.yaml:4:5: deny[2]:") and "no word" in e for e in errors), errors
    assert any(e.startswith("d.yaml:5:1:") and "did you mean 'deny'" in e for e in errors), errors
