"""The `facet_select` event (issue 11, item 9): a user picked a facet value (brand=zenit).

It names no catalog item: it is sent as `{"type": "facet_select", "user_id": ...,
"facet": {"attribute": "brand", "value": "zenit"}, "timestamp": ...}` (plus `query_id`, the
search whose facets it refined, so `affinity facets report` can join it). Validation
(events/event.py) turns the facet into the event's `item_id` (`facet:brand=zenit`) and its
`attributes` ({"brand": ("zenit",)}), so it folds into the profile like any event, with the
weight of `facet_select` in the boost profile's `event_weights`. The ingest path keeps
those attributes (there is no catalog item to take them from). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

FACET_SELECT = "facet_select"
FACET_ITEM_PREFIX = "facet:"


def facet_item_id(attribute: str, value: str) -> str:
    """The item id a facet_select event is stored under: `facet:brand=zenit`."""
    return f"{FACET_ITEM_PREFIX}{attribute}={value}"


def is_facet_select(event_type: str, item_id: str) -> bool:
    return event_type == FACET_SELECT and item_id.startswith(FACET_ITEM_PREFIX)


def facet_of(item_id: str) -> tuple[str, str] | None:
    """(attribute, value) of a facet item id, None for any other id."""
    if not item_id.startswith(FACET_ITEM_PREFIX) or "=" not in item_id:
        return None
    attribute, _, value = item_id[len(FACET_ITEM_PREFIX) :].partition("=")
    return attribute, value


def facet_problem(facet: object, name: str) -> str | None:
    """Why `facet` (the event's `facet` field, called `name`) is unusable, or None."""
    if not isinstance(facet, Mapping):
        return f"{name} must be an object {{attribute, value}}, got {facet!r}"
    for key in ("attribute", "value"):
        text = facet.get(key)
        if not isinstance(text, str) or not text.strip():
            return f"{name}.{key} must be a non-empty text, got {text!r}"
    if "=" in facet["attribute"] or "." in facet["attribute"]:
        return f"{name}.attribute {facet['attribute']!r} must be a field name without = or ."
    return None
