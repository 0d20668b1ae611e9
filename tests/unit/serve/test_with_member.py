"""The response splice (serve/search.py `with_member`): one member added to the engine's
bytes without parsing them, equal to parsing, adding and writing them again."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from rewriter.serve.search import with_member

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(st.text(max_size=6).filter(lambda k: k != "p"), JSON, max_size=5), JSON)
def test_splice_equals_parse_add_dump(response: dict, value: object) -> None:
    spliced = with_member(orjson.dumps(response), "p", value)
    assert orjson.loads(spliced) == {**response, "p": value}


def test_keeps_the_engines_bytes_and_whitespace() -> None:
    raw = b'{"took": 3, "hits": {"hits": []}}\n'
    out = with_member(raw, "personalization", {"applied": False})
    assert out == b'{"took": 3, "hits": {"hits": []},"personalization":{"applied":false}}'


def test_an_empty_object() -> None:
    assert with_member(b"{ }", "p", 1) == b'{"p":1}'


def test_trailing_whitespace_after_the_object() -> None:
    assert orjson.loads(with_member(b'{"a": 1}  \n\t', "p", 2)) == {"a": 1, "p": 2}
