"""facet_select events (issue 11, item 9): validated into an item id and attributes, read
back from the log unchanged, folded with their own weight, rejected with the field named."""

from __future__ import annotations

import time

import pytest

from rewriter.boost.profile import DEFAULT_EVENT_WEIGHTS
from rewriter.events.event import Event, validate
from rewriter.events.facet_select import facet_of, is_facet_select
from rewriter.events.fields import Rejection
from rewriter.profiles.fold import FoldConfig, fold

TYPES = tuple(DEFAULT_EVENT_WEIGHTS)
NOW = time.time()


def _raw(**facet: object) -> dict[str, object]:
    return {"user_id": "u1", "type": "facet_select", "timestamp": NOW, "facet": facet}


def test_a_facet_select_becomes_an_item_id_and_its_attribute() -> None:
    event = validate(_raw(attribute="brand", value="Zenit Ω"), TYPES)
    assert isinstance(event, Event)
    assert event.item_id == "facet:brand=Zenit Ω"
    assert event.attributes == {"brand": ("Zenit Ω",)}
    assert is_facet_select(event.type, event.item_id)
    assert facet_of(event.item_id) == ("brand", "Zenit Ω")


def test_it_reads_back_from_the_log_as_the_same_event() -> None:
    event = validate({**_raw(attribute="category", value="hats"), "query_id": "q1"}, TYPES)
    assert isinstance(event, Event)
    again = validate(event.to_doc(), TYPES)
    assert again == event and again.attributes == event.attributes


@pytest.mark.parametrize(
    ("facet", "field", "says"),
    [
        ({"attribute": "brand"}, "facet.value", "non-empty text"),
        ({"attribute": "", "value": "x"}, "facet.attribute", "non-empty text"),
        ({"attribute": "a.b", "value": "x"}, "facet.attribute", "without = or ."),
    ],
)
def test_a_bad_facet_is_rejected_naming_the_field(facet: dict, field: str, says: str) -> None:
    rejected = validate(_raw(**facet), TYPES)
    assert isinstance(rejected, Rejection)
    assert rejected.field == "facet" and field in rejected.reason and says in rejected.reason


def test_a_facet_that_is_not_an_object_is_rejected() -> None:
    raw = {"user_id": "u1", "type": "facet_select", "timestamp": NOW, "facet": "brand=zenit"}
    rejected = validate(raw, TYPES)
    assert isinstance(rejected, Rejection) and "must be an object" in rejected.reason


def test_without_a_facet_it_needs_an_item_like_any_event() -> None:
    rejected = validate({"user_id": "u1", "type": "facet_select", "timestamp": NOW}, TYPES)
    assert isinstance(rejected, Rejection) and rejected.field == "item_id"


def test_it_folds_with_its_own_weight() -> None:
    event = validate(_raw(attribute="brand", value="zenit"), TYPES)
    assert isinstance(event, Event)
    doc = fold(None, [event], FoldConfig())
    assert doc["affinities"]["brand"]["zenit"] == pytest.approx(
        DEFAULT_EVENT_WEIGHTS["facet_select"]
    )
    unweighted = FoldConfig(event_weights={"view": 1.0})
    assert fold(None, [event], unweighted)["affinities"].get("brand", {}) == {}
