"""URL parameters of a search that the rewrite must see are moved into the body."""

from __future__ import annotations

import pytest

from rewriter.serve.errors import ProxyError
from rewriter.serve.search import _body_from, _forward_params, url_sort


def test_url_sort_in_body_form() -> None:
    assert url_sort("price:asc,title, _score:desc") == [
        {"price": "asc"},
        "title",
        {"_score": "desc"},
    ]


def test_url_from_size_and_sort_move_into_the_body() -> None:
    params = {"from": "10", "size": "5", "sort": "price:desc", "routing": "x"}
    body = _body_from(b'{"sort": "title", "query": {"match_all": {}}}', params)
    assert body == {
        "sort": ["title", {"price": "desc"}],  # OpenSearch puts URL sorts after the body's
        "query": {"match_all": {}},
        "from": 10,
        "size": 5,
    }
    assert _forward_params(params) == {"routing": "x"}


def test_a_non_integer_size_is_a_400() -> None:
    with pytest.raises(ProxyError) as err:
        _body_from(b"", {"size": "ten"})
    assert err.value.status == 400 and "size" in err.value.reason
