"""Event and catalog validation (events/event.py), and every import parser (events/formats.py)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

import pytest

from rewriter.events.catalog import (
    CatalogRecord,
    item_attributes,
    validate_catalog,
    with_item_attributes,
)
from rewriter.events.event import EVENT_FIELD_NAMES, Event, validate
from rewriter.events.fields import Rejection, parse_timestamp
from rewriter.events.formats import (
    FieldMapping,
    MappingError,
    load_mapping,
    movielens_movie,
    movielens_rating,
    parse_catalog_csv,
    parse_catalog_jsonl,
    parse_csv,
    parse_jsonl,
    parse_movielens_movies,
    parse_movielens_ratings,
    parse_segment,
    parse_ubi,
)

ROOT = Path(__file__).resolve().parents[3]
T = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def raw(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1",
        "user_id": "u1",
        "type": "click",
        "item_id": "sku-1",
        "timestamp": T,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def ok(result: Event | Rejection) -> Event:
    assert isinstance(result, Event), result
    return result


def rejected(result: object) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.field in result.reason, "every rejection reason names its field"
    return result


def lines(text: str) -> list[str]:
    return io.StringIO(text).readlines()


# --- validate -----------------------------------------------------------------------------


def test_full_event_validates() -> None:
    event = ok(
        validate(
            raw(
                query=" red shoes ",
                query_id="q9",
                position="3",
                price="19.90",
                quantity=2,
                session_id="s1",
                context={"device": "mobile", "geo": "DE", "referrer": None},
                experiment="exp1",
                variant="B",
                opt_out="false",
                attributes={"brand": "Acme", "category": ["shoes", "sale", "shoes"]},
            )
        )
    )
    assert event.query == "red shoes"
    assert event.position == 3
    assert event.value == pytest.approx(19.90)
    assert event.quantity == 2
    assert event.context == {"device": "mobile", "geo": "DE"}
    assert event.attributes == {"brand": ("Acme",), "category": ("shoes", "sale")}
    assert (event.experiment, event.variant, event.opt_out) == ("exp1", "B", False)
    assert not event.event_id_generated


@pytest.mark.parametrize(
    "stamp",
    [
        T,
        int(T),
        str(int(T)),
        T * 1000,
        str(int(T * 1000)),
        "2024-05-01T12:00:00Z",
        "2024-05-01T14:00:00+02:00",
        "2024-05-01T12:00:00",
        "2024-05-01 12:00:00.000Z",
    ],
)
def test_timestamp_formats_mean_the_same_instant(stamp: object) -> None:
    assert ok(validate(raw(timestamp=stamp))).timestamp == pytest.approx(T, abs=1e-6)


@pytest.mark.parametrize(
    "stamp", [0, 1, "1970-01-01T00:00:00Z", 1e20, "2200-01-01", -5, T * 1e6, "nan", "yesterday"]
)
def test_absurd_timestamps_are_rejected(stamp: object) -> None:
    rej = rejected(validate(raw(timestamp=stamp)))
    assert rej.field == "timestamp"


def test_future_events_are_rejected_only_against_a_clock() -> None:
    tomorrow_and_more = T + 2 * 86_400
    assert isinstance(validate(raw(timestamp=tomorrow_and_more)), Event)
    rej = rejected(validate(raw(timestamp=tomorrow_and_more), now=T))
    assert "2024-05-03" in rej.reason
    assert isinstance(validate(raw(timestamp=T + 3600), now=T), Event)


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"user_id": None}, "user_id", "missing"),
        ({"user_id": "  "}, "user_id", "missing"),
        ({"user_id": {"id": 1}}, "user_id", "must be a string"),
        ({"item_id": None}, "item_id", "missing"),
        ({"item_id": True}, "item_id", "must be a string"),
        ({"item_id": "x" * 600}, "item_id", "600 characters"),
        ({"type": None}, "type", "missing"),
        ({"type": "wishlist"}, "type", "not a known event type"),
        ({"timestamp": None}, "timestamp", "missing"),
        ({"timestamp": True}, "timestamp", "not ISO 8601"),
        ({"timestamp": "2024-13-45"}, "timestamp", "not ISO 8601"),
        ({"position": -1}, "position", "≥ 0"),
        ({"position": 1.5}, "position", "whole number"),
        ({"quantity": 0}, "quantity", "whole number ≥ 1"),
        # found by the fuzzer: past 64 bits, one such event failed the whole group commit
        ({"position": 2**70}, "position", "≤ 2147483647"),
        ({"quantity": 1e30}, "quantity", "≤ 1000000"),
        ({"position": 2**31}, "position", "≤ 2147483647"),
        ({"value": "cheap"}, "value", "must be a number"),
        ({"value": float("inf")}, "value", "finite"),
        ({"price": -3}, "price", "≥ 0"),
        ({"value": 1e308}, "value", "≤"),  # × quantity 10 made a profile's lifetime value inf
        ({"price": "1e300"}, "price", "≤"),
        ({"quantity": 10_000_000}, "quantity", "≤"),
        ({"opt_out": "maybe"}, "opt_out", "true or false"),
        ({"context": "mobile"}, "context", "must be an object"),
        ({"context": {"device": ["a"]}}, "context.device", "must be a string"),
        ({"context": {"": "x"}}, "context", "key"),  # the engine refuses these documents
        ({"context": {"a..b": "x"}}, "context", "key"),
        ({"context": {"device.model": "x"}}, "context", "key"),
        ({"attributes": ["brand"]}, "attributes", "must be an object"),
        ({"attributes": {"brand": {"x": 1}}}, "attributes.brand", "list of strings"),
        ({"attributes": {"tag": [str(i) for i in range(101)]}}, "attributes.tag", "limit"),
        ({"event_id": 3.5}, "event_id", "must be a string"),
        ({"session_id": ["s"]}, "session_id", "must be a string"),
    ],
)
def test_rejections_name_the_field(overrides: dict[str, object], field: str, fragment: str) -> None:
    event = raw(**{k: v for k, v in overrides.items() if v is not None})
    for key in [k for k, v in overrides.items() if v is None]:
        event.pop(key)
    rej = rejected(validate(event))
    assert rej.field == field
    assert fragment in rej.reason


@pytest.mark.parametrize("field", ["event_id", "item_id"])
def test_ids_the_engine_would_refuse_are_rejected_by_field(field: str) -> None:
    """OpenSearch refuses a document id over 512 bytes of UTF-8 (`event_id` is the events
    log's doc id, `item_id` the catalog's): 300 × "é" is 300 characters but 600 bytes."""
    rej = rejected(validate(raw(**{field: "é" * 300})))
    assert rej.field == field
    assert "600 bytes" in rej.reason and "512" in rej.reason
    assert isinstance(validate(raw(**{field: "é" * 256})), Event)  # 512 bytes: fine


def _integer_fields() -> dict[str, int]:
    """The events index's integer-typed fields that events carry, with the largest value
    each mapping type holds."""
    mapping = json.loads((ROOT / "index_templates" / "events.json").read_text())
    largest = {"integer": 2**31 - 1, "long": 2**63 - 1, "short": 2**15 - 1, "byte": 127}
    fields = mapping["mappings"]["properties"]
    return {
        name: largest[spec["type"]]
        for name, spec in fields.items()
        if spec.get("type") in largest and name in EVENT_FIELD_NAMES
    }


def test_integer_fields_are_bounded_like_their_mappings() -> None:
    """1e20 made orjson fail the whole `_bulk` ("Integer exceeds 64-bit range"); 3e9 made
    the engine refuse the document (out of range for an integer)."""
    fields = _integer_fields()
    assert set(fields) >= {"position", "quantity"}
    for name, largest in fields.items():
        for too_big in (largest + 1, 1e20, "1e20"):
            assert rejected(validate(raw(**{name: too_big}))).field == name
        assert ok(validate(raw(**{name: 1000}))).__dict__[name] == 1000
    assert ok(validate(raw(position=2**31 - 1))).position == 2**31 - 1


def test_rejection_uses_the_callers_field_names() -> None:
    rej = rejected(validate(raw(item_id=None), names={"item_id": "sku"}))
    assert rej.field == "sku"
    assert rej.reason.startswith("sku ")


def test_custom_types_need_configured_weights() -> None:
    weights = {"view": 1.0, "wishlist": 3.0}
    assert ok(validate(raw(type="wishlist"), weights)).type == "wishlist"
    assert ok(validate(raw(type="WishList"), weights)).type == "wishlist"
    assert ok(validate(raw(type="Add_To_Cart"))).type == "add_to_cart"
    assert "wishlist" in rejected(validate(raw(type="wishlist"))).reason


def test_missing_event_id_is_generated_from_content() -> None:
    first = ok(validate(raw(event_id=None)))
    again = ok(validate(raw(event_id=None, timestamp="2024-05-01T12:00:00Z")))
    enriched = ok(validate(raw(event_id=None, attributes={"brand": "x"}, context={"geo": "FR"})))
    assert first.event_id_generated
    assert first.event_id.startswith("gen-")
    assert first.event_id == again.event_id == enriched.event_id
    for change in ({"item_id": "sku-2"}, {"value": 3}, {"session_id": "s2"}, {"timestamp": T + 1}):
        assert ok(validate(raw(event_id=None, **change))).event_id != first.event_id


def test_with_user_regenerates_only_generated_ids() -> None:
    generated = ok(validate(raw(event_id=None)))
    given = ok(validate(raw()))
    moved = generated.with_user("pseudo")
    assert moved.user_id == "pseudo"
    assert moved.event_id != generated.event_id
    assert moved.event_id == ok(validate(raw(event_id=None, user_id="pseudo"))).event_id
    assert given.with_user("pseudo").event_id == "e1"


def test_to_doc_round_trips_through_validate() -> None:
    for event in (
        ok(validate(raw(event_id=None, value=2, attributes={"brand": ["a"]}, opt_out=True))),
        ok(validate(raw(query="q", position=0, context={"device": "tv"}, quantity=1))),
    ):
        doc = json.loads(json.dumps(event.to_doc()))
        assert ok(validate(doc)) == event


def test_with_item_attributes_captures_catalog_values() -> None:
    record = CatalogRecord(
        id="sku-1", title="Shoe", brand="Acme", category=("shoes",), facets={"color": ("red",)}
    )
    event = ok(validate(raw()))
    assert with_item_attributes(event, record).attributes == {
        "brand": ("Acme",),
        "category": ("shoes",),
        "color": ("red",),
    }
    assert with_item_attributes(event, record, ["brand"]).attributes == {"brand": ("Acme",)}


def test_an_items_attributes_are_one_function_of_its_catalog_document(tmp_path: Path) -> None:
    """A record loaded from a file, the same item read back from the catalog index (as
    affinity's import indexed it, and as another tool indexed the raw item), give the same
    attributes: events carry what profiles fold whichever way the item got there."""
    item = {
        "id": "sku-9",
        "title": "Trail runner",
        "brand": " Acme ",
        "category": ["shoes", "sale", "shoes", ""],
        "color": ["red", 7, None],
        "price": 120,
    }
    path = tmp_path / "catalog.jsonl"
    path.write_text(json.dumps(item) + "\n")
    with path.open() as handle:
        [(_, record)] = list(parse_catalog_jsonl(handle, FieldMapping(facets=("color",))))
    assert isinstance(record, CatalogRecord)
    names = ("brand", "category", "color")
    indexed = json.loads(json.dumps(record.to_doc()))  # its `_source` in the catalog index
    written_elsewhere = json.loads(json.dumps(item))
    want = {"brand": ("Acme",), "category": ("shoes", "sale"), "color": ("red", "7")}
    assert record.attributes() == want
    assert item_attributes(indexed, names) == want
    assert item_attributes(written_elsewhere, names) == want
    assert item_attributes(indexed, ["brand", "size"]) == {"brand": ("Acme",)}
    event = ok(validate(raw()))
    assert with_item_attributes(event, record, ["color"]).attributes == {"color": ("red", "7")}


def test_parse_timestamp_rejects_non_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_timestamp(float("nan"))


# --- JSONL and CSV ------------------------------------------------------------------------


def results(parsed: Iterable[tuple[int, object]]) -> list[tuple[int, object]]:
    return list(parsed)


def test_jsonl_numbers_lines_and_survives_bad_ones() -> None:
    text = "\n".join([json.dumps(raw()), "", "{not json", "[1, 2]", json.dumps(raw(item_id=None))])
    out = results(parse_jsonl(lines(text)))
    assert [n for n, _ in out] == [1, 3, 4, 5]
    assert isinstance(out[0][1], Event)
    bad_json, not_object, no_item = (rejected(r) for _, r in out[1:])
    assert (bad_json.field, bad_json.line) == ("record", 3)
    assert (not_object.field, not_object.line) == ("record", 4)
    assert (no_item.field, no_item.line) == ("item_id", 5)
    assert str(no_item).startswith("line 5: item_id")


CSV_EVENTS = """customer,action,sku,when,amount,device,brands,cats
c1,purchase,p1,2024-05-01T12:00:00Z,9.5,mobile,Acme,shoes|sale
c2,click,,2024-05-01T12:00:00Z,,desktop,,
c3,"teleport",p3,2024-05-01T12:00:00Z,,,,
"""
CSV_MAPPING = FieldMapping(
    fields={
        "user_id": "customer",
        "type": "action",
        "item_id": "sku",
        "timestamp": "when",
        "value": "amount",
        "context.device": "device",
        "attributes.brand": "brands",
        "attributes.category": "cats",
    }
)


def test_csv_with_mapping() -> None:
    out = results(parse_csv(lines(CSV_EVENTS), CSV_MAPPING))
    assert [n for n, _ in out] == [2, 3, 4]
    event = out[0][1]
    assert isinstance(event, Event)
    assert (event.user_id, event.type, event.item_id, event.value) == ("c1", "purchase", "p1", 9.5)
    assert event.context == {"device": "mobile"}
    assert event.attributes == {"brand": ("Acme",), "category": ("shoes", "sale")}
    missing_sku, bad_type = rejected(out[1][1]), rejected(out[2][1])
    assert (missing_sku.field, missing_sku.line) == ("sku", 3)
    assert (bad_type.field, bad_type.line) == ("action", 4)


def test_csv_without_mapping_reads_our_column_names() -> None:
    text = "user_id,type,item_id,timestamp\nu,view,i,1714564800\n"
    [(line_no, event)] = results(parse_csv(lines(text)))
    assert line_no == 2
    assert ok(event).timestamp == T


def test_csv_header_must_have_mapped_columns() -> None:
    with pytest.raises(MappingError, match="no column 'customer'"):
        list(parse_csv(lines("user,type\n"), FieldMapping(fields={"user_id": "customer"})))


def test_csv_mapping_targets_must_be_ours() -> None:
    with pytest.raises(MappingError, match="'usr' is not one of ours"):
        list(parse_csv(lines("a\n"), FieldMapping(fields={"usr": "a"})))


def test_csv_row_with_wrong_field_count_is_rejected() -> None:
    text = 'user_id,type,item_id,timestamp\nu,view,i,1714564800,extra\n"u\n2",view,i,1\nu,view\n'
    out = results(parse_csv(lines(text)))
    assert [(n, rejected(r).field) for n, r in out if isinstance(r, Rejection)] == [
        (2, "row"),
        (3, "timestamp"),
        (5, "row"),
    ]


# --- Segment ------------------------------------------------------------------------------


def segment(**overrides: object) -> str:
    call: dict[str, object] = {
        "type": "track",
        "event": "Product Clicked",
        "userId": "u1",
        "messageId": "m1",
        "timestamp": "2024-05-01T12:00:00Z",
        "properties": {
            "product_id": "p1",
            "brand": "Acme",
            "category": "Shoes",
            "price": 20,
            "position": 2,
            "query": "shoes",
        },
        "context": {"device": {"type": "ios"}, "campaign": {"name": "spring"}},
    }
    call.update(overrides)
    return json.dumps(call)


def test_segment_product_clicked() -> None:
    [(_, result)] = results(parse_segment([segment()]))
    event = ok(result)
    assert (event.type, event.user_id, event.item_id, event.event_id) == ("click", "u1", "p1", "m1")
    assert (event.value, event.position, event.query, event.timestamp) == (20.0, 2, "shoes", T)
    assert event.attributes == {"brand": ("Acme",), "category": ("Shoes",)}
    assert event.context == {"device": "ios", "campaign": "spring"}


def test_segment_order_completed_yields_one_purchase_per_product() -> None:
    order = segment(
        event="Order Completed",
        userId=None,
        anonymousId="anon-7",
        properties={
            "order_id": "o1",
            "products": [
                {"product_id": "p1", "price": 10, "quantity": 2},
                {"sku": "p2", "price": 5},
                {"price": 1},
            ],
        },
    )
    out = results(parse_segment([order]))
    first, second = ok(out[0][1]), ok(out[1][1])
    assert [first.event_id, second.event_id] == ["m1:0", "m1:1"]
    assert (first.type, first.user_id, first.quantity, second.item_id) == (
        "purchase",
        "anon-7",
        2,
        "p2",
    )
    rej = rejected(out[2][1])
    assert (rej.field, rej.line) == ("properties.products[2].product_id", 1)


def test_segment_rejections_use_segment_names() -> None:
    out = results(
        parse_segment(
            [
                json.dumps({"type": "identify", "userId": "u"}),
                segment(event="Coupon Applied"),
                segment(properties={"price": 3}),
                segment(timestamp="soon"),
            ]
        )
    )
    fields = [rejected(r).field for _, r in out]
    assert fields == ["type", "event", "properties.product_id", "timestamp"]
    assert [n for n, _ in out] == [1, 2, 3, 4]


def test_segment_event_map_is_overridable_and_custom_types_pass_through() -> None:
    custom = {"Coupon Applied": "coupon"}
    [(_, mapped)] = results(parse_segment([segment(event="Coupon Applied")], ["coupon"], custom))
    assert ok(mapped).type == "coupon"
    [(_, passthrough)] = results(parse_segment([segment(event="Wishlist")], ["wishlist"]))
    assert ok(passthrough).type == "wishlist"


# --- UBI ----------------------------------------------------------------------------------


def ubi(**overrides: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "application": "shop",
        "action_name": "add_to_cart",
        "client_id": "c-42",
        "query_id": "q-1",
        "session_id": "s-1",
        "message_id": "msg-1",
        "timestamp": 1714564800000,
        "event_attributes": {
            "object": {"object_id": "sku-9", "object_id_field": "sku"},
            "position": {"ordinal": 4},
        },
    }
    doc.update(overrides)
    return doc


def test_ubi_event_document() -> None:
    [(_, result)] = results(parse_ubi([json.dumps(ubi())]))
    event = ok(result)
    assert (event.type, event.user_id, event.item_id, event.event_id) == (
        "add_to_cart",
        "c-42",
        "sku-9",
        "msg-1",
    )
    assert (event.query_id, event.session_id, event.position, event.timestamp) == (
        "q-1",
        "s-1",
        4,
        T,
    )


def test_ubi_search_hit_with_top_level_object_and_user() -> None:
    hit = {"_id": "x", "_source": ubi(object_id="sku-1", user_id="u-1", action_name="buy")}
    [(_, result)] = results(parse_ubi([json.dumps(hit)], action_map={"buy": "purchase"}))
    event = ok(result)
    assert (event.type, event.user_id, event.item_id) == ("purchase", "u-1", "sku-1")


def test_ubi_rejections_use_ubi_names() -> None:
    docs = [ubi(event_attributes={}), ubi(action_name="hover"), ubi(client_id=None)]
    out = results(parse_ubi([json.dumps(d) for d in docs]))
    assert [rejected(r).field for _, r in out] == [
        "event_attributes.object.object_id",
        "action_name",
        "client_id",
    ]


# --- catalog and mappings -----------------------------------------------------------------


def test_catalog_record_validates_and_renders() -> None:
    record = validate_catalog(
        {"id": 7, "title": "Shoe", "category": "a|b", "price": "5", "created_at": "2020-01-01"}
    )
    assert isinstance(record, CatalogRecord)
    assert record.category == ("a", "b")
    assert record.to_doc() == {
        "id": "7",
        "title": "Shoe",
        "category": ["a", "b"],
        "price": 5.0,
        "created_at": "2020-01-01T00:00:00Z",
    }


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"title": "x"}, "id"),
        ({"id": "1"}, "title"),
        ({"id": "1", "title": "x", "price": "free"}, "price"),
        ({"id": "1", "title": "x", "created_at": "1700-01-01"}, "created_at"),
        ({"id": "1", "title": "x", "category": {"a": 1}}, "category"),
    ],
)
def test_catalog_rejections_name_the_field(fields: dict[str, object], field: str) -> None:
    assert rejected(validate_catalog(fields)).field == field


CATALOG_CSV = """sku,name,maker,cats,cost,launched,color
1,Red shoe,Acme,shoes;sale,10,2021-03-04,red;dark red
2,Blue shoe,,,,,
3,,Acme,,,,
"""


def test_catalog_csv_with_mapping_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "fields:\n  id: sku\n  title: name\n  brand: maker\n  category: cats\n"
        "  price: cost\n  created_at: launched\nseparator: ';'\nfacets: [color]\n"
    )
    mapping = load_mapping(path)
    out = results(parse_catalog_csv(lines(CATALOG_CSV), mapping))
    first, second, third = (r for _, r in out)
    assert isinstance(first, CatalogRecord) and isinstance(second, CatalogRecord)
    assert first.attributes() == {
        "brand": ("Acme",),
        "category": ("shoes", "sale"),
        "color": ("red", "dark red"),
    }
    assert first.to_doc()["created_at"] == "2021-03-04T00:00:00Z"
    assert second.attributes() == {}
    rej = rejected(third)
    assert (rej.field, rej.line) == ("name", 4)


def test_catalog_jsonl_with_json_mapping(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"fields": {"id": "asin", "title": "name"}, "facets": ["tags"]}))
    docs = [{"asin": "B1", "name": "Book", "tags": ["x", "y"], "category": ["Books"]}, {"name": 3}]
    out = results(parse_catalog_jsonl([json.dumps(d) for d in docs], load_mapping(path)))
    record = out[0][1]
    assert isinstance(record, CatalogRecord)
    assert (record.id, record.category, record.facets) == ("B1", ("Books",), {"tags": ("x", "y")})
    assert rejected(out[1][1]).field == "asin"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colums: {}\n", "unknown key 'colums'"),
        ("fields: [id]\n", "'fields' must map"),
        ("separator: ''\n", "'separator'"),
        ("facets: color\n", "'facets'"),
        ("- a\n", "must be an object"),
        ("fields: {id: [\n", "cannot read"),
    ],
)
def test_mapping_file_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(MappingError, match=message) as err:
        load_mapping(path)
    assert str(path) in str(err.value)


def test_facet_may_not_shadow_a_core_field() -> None:
    rej = rejected(validate_catalog({"id": "1", "title": "t", "brand": "b"}, facets=["brand"]))
    assert rej.field == "brand"


# --- MovieLens ----------------------------------------------------------------------------


def test_movielens_movie_rows() -> None:
    toy = movielens_movie({"movieId": "1", "title": "Toy Story (1995)", "genres": "A|B"})
    assert isinstance(toy, CatalogRecord)
    assert (toy.id, toy.title, toy.category, toy.brand) == (
        "1",
        "Toy Story (1995)",
        ("A", "B"),
        None,
    )
    assert toy.to_doc()["created_at"] == "1995-01-01T00:00:00Z"
    series = movielens_movie(
        {"movieId": "2", "title": "Death Note (2006–2007)", "genres": "(no genres listed)"}
    )
    assert isinstance(series, CatalogRecord)
    assert (series.category, series.to_doc()["created_at"]) == ((), "2006-01-01T00:00:00Z")
    padded = movielens_movie({"movieId": "3", "title": "Assembly (2007) ", "genres": "War"})
    assert isinstance(padded, CatalogRecord) and padded.title == "Assembly (2007)"
    undated = movielens_movie({"movieId": "4", "title": "Cosmos", "genres": "Drama"})
    assert isinstance(undated, CatalogRecord) and undated.created_at is None


def test_movielens_rating_rows() -> None:
    high = ok(
        movielens_rating({"userId": "1", "movieId": "3", "rating": "4.0", "timestamp": "9e8"})
    )
    low = ok(movielens_rating({"userId": "1", "movieId": "3", "rating": "3.5", "timestamp": "9e8"}))
    assert (high.type, high.value, high.timestamp) == ("rating_high", 4.0, 9e8)
    assert (low.type, low.event_id) == ("rating_low", "ml-1-3-9e8")
    row = {"userId": "1", "movieId": "3", "rating": "x", "timestamp": "1"}
    assert rejected(movielens_rating(row)).field == "rating"
    assert rejected(movielens_rating({**row, "rating": "5", "userId": ""})).field == "userId"


def test_movielens_files_parse_cleanly() -> None:
    movies_path = ROOT / "data" / "movielens" / "movies.csv"
    ratings_path = ROOT / "data" / "movielens" / "ratings.csv"
    with movies_path.open(newline="", encoding="utf-8") as movies:
        parsed = list(parse_movielens_movies(movies))
    assert len(parsed) == 9742
    assert not [r for _, r in parsed if isinstance(r, Rejection)]
    with ratings_path.open(newline="", encoding="utf-8") as ratings:
        first = list(islice(parse_movielens_ratings(ratings), 2000))
    assert all(isinstance(r, Event) for _, r in first)
    line_no, event = first[0]
    assert (line_no, event.event_id, event.type) == (2, "ml-1-1-964982703", "rating_high")


def test_the_log_document_is_to_doc_plus_the_pipeline_fields() -> None:
    """pipeline._log_doc builds the stored document in one pass; it must equal to_doc's."""
    import orjson

    from rewriter.ingest.pipeline import _log_doc

    full = validate(
        {
            "user_id": "u",
            "type": "purchase",
            "item_id": "i",
            "timestamp": 1_714_564_800,
            "query": "red shoes",
            "query_id": "q1",
            "position": 0,
            "value": 0.0,
            "quantity": 2,
            "session_id": "s",
            "context": {"device": "mobile"},
            "experiment": "x",
            "variant": "b",
        },
        ("purchase",),
    )
    bare = validate({"event_id": "e", "user_id": "u", "type": "view", "item_id": "i",
                     "timestamp": 1_714_564_800})  # fmt: skip
    assert isinstance(full, Event) and isinstance(bare, Event)
    for event in (full, bare, full.with_attributes({"brand": ("acme",)})):
        pipeline = {"known_item": True, "batch_id": "b1", "ingested_at": 5.0, "source": "csv"}
        expected = {**event.to_doc(), **pipeline}
        got = _log_doc(event, True, "b1", 5.0, "csv")
        assert orjson.loads(orjson.dumps(got)) == orjson.loads(orjson.dumps(expected))


def test_decision_and_recommendation_ids_join_as_query_id() -> None:
    from rewriter.events.event import TRACKING_EVENT_TYPES, Event, validate

    base = {"user_id": "u", "item_id": "banner", "timestamp": 1.7e9}
    types = ("click", *TRACKING_EVENT_TYPES)
    shown = validate({**base, "type": "impression", "decision_id": "d-1"}, types)
    clicked = validate({**base, "type": "click", "recommendation_id": "r-2"}, types)
    both = validate({**base, "type": "click", "query_id": "q", "decision_id": "d-3"}, types)
    assert isinstance(shown, Event) and shown.query_id == "d-1"
    assert isinstance(clicked, Event) and clicked.query_id == "r-2"
    assert isinstance(both, Event) and both.query_id == "q"
    bad = validate({**base, "type": "click", "decision_id": {"id": 5}}, types)
    assert not isinstance(bad, Event) and bad.field == "decision_id"
