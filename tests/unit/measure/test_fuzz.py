"""The proxy fuzzer's own judgement (rewriter/measure/fuzz*.py): it must see a
5xx, a hang, a leak or an unexplained write when there is one, and build the requests it
claims to."""

from __future__ import annotations

import random

import orjson

from rewriter.measure import fuzz_generate
from rewriter.measure.fuzz import (
    PARSER_REFUSAL,
    DataCheck,
    Outcome,
    Tally,
    check_data,
    check_impressions,
    parse_response,
)
from rewriter.measure.fuzz_cases import World, hostile
from rewriter.measure.fuzz_generate import Draft, mutated, to_raw

WORLD = World("t-catalog", ("u1", "u2"), ("default",), ("t-affinity-profiles",), ("sku-1",))


def _outcome(status: int | None, body: object = b"", problem: str | None = None) -> Outcome:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return Outcome("case", b"/x", status, raw, problem=problem)


def test_responses_are_parsed_past_100_continue_and_chunks() -> None:
    raw = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 413 Payload Too Large\r\ntransfer-encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    assert parse_response(raw)[0::2] == (413, b"{}")
    assert parse_response(b"garbage")[0] is None


def test_the_tally_counts_5xx_hangs_and_errors_without_the_shape() -> None:
    t = Tally()
    t.add(_outcome(500, {"error": {"type": "x", "reason": "y"}, "status": 500}))
    t.add(_outcome(None, problem="hang"))
    t.add(_outcome(400, {"error": "a string"}))
    t.add(_outcome(400, {"error": {"type": "x", "reason": "y"}, "status": 400}))
    t.add(_outcome(400, {"accepted": 0, "rejections": []}))
    t.add(_outcome(400, PARSER_REFUSAL))
    assert (t.server_error_count, len(t.hangs), t.unshaped_count, t.parser_refusals) == (1, 1, 1, 1)
    assert t.statuses == {"500": 1, "hang": 1, "400": 4}


def test_the_tally_counts_accepted_events_logged_searches_and_private_hits() -> None:
    t = Tally(private=("t-affinity-profiles",))
    t.add(_outcome(202, {"accepted": 3, "rejections": []}))
    t.add(_outcome(202, {"accepted": 0, "rejections": []}))
    search = {"hits": {"hits": [{"_index": "t-catalog-v1"}]}, "personalization": {"query_id": "q"}}
    t.add(_outcome(200, search))
    msearch = {"responses": [search, {"error": {}, "personalization": {"query_id": "r"}}]}
    t.add(_outcome(200, msearch))
    leak = {"hits": {"hits": [{"_index": "t-affinity-profiles-v1", "_id": "p"}]}}
    t.add(_outcome(200, leak))
    assert (t.events_accepted, t.event_requests_accepted, t.event_requests_written) == (3, 1, 2)
    assert t.impressions_expected == 2
    assert len(t.private_hits) == 1


def test_data_changes_are_checked_against_what_requests_explain() -> None:
    kinds = {"events": {"ev"}, "profiles": {"pr"}, "journal": {"jo"}, "impressions": {"im"}}
    before = {"ev": 10, "pr": 2, "jo": 1, "im": 0, "catalog": 40}
    t = Tally(events_accepted=3, event_requests_accepted=1, event_requests_written=1)
    t.impressions_expected = 5
    fine = {"ev": 13, "pr": 3, "jo": 2, "im": 5, "catalog": 40}
    assert check_data(kinds, before, fine, t).problems == []
    bad = {"ev": 14, "pr": 3, "jo": 4, "im": 5, "catalog": 39, "new": 0}
    problems = " | ".join(check_data(kinds, before, bad, t).problems)
    for fragment in ("indices created: ['new']", "catalog: 40", "events grew by 4", "journal"):
        assert fragment in problems


def test_impressions_must_add_up() -> None:
    t = Tally(impressions_expected=5)
    data = DataCheck({"im": 0}, {"im": 4}, [])
    check_impressions(data, {"im"}, {"written": 5, "dropped": 0, "failed": 0}, t)
    assert data.problems == ["impressions grew by 4, the writer wrote 5"]


def test_hostile_cases_cover_every_group_and_are_wire_ready() -> None:
    cases = hostile(WORLD)
    labels = " ".join(c.label for c in cases)
    for fragment in ("nested 10000", "1e400", "NUL", "1 MB user id", "..", "_all", "format="):
        assert fragment in labels, fragment
    for case in cases:
        wire = case.wire(b"h")
        assert wire.startswith(case.method + b" " + case.target + b" HTTP/1.1\r\n")
        assert wire.endswith(b"\r\n\r\n" + case.body)


def test_drafts_become_requests_and_mutants_are_reproducible() -> None:
    draft = Draft(
        "POST",
        "/t-catalog/_search",
        (("explain", True), ("size", 3)),
        (("X-User-Id", "u1\r\nX-Evil: 1"),),
        {"query": {"match": {"title": "\ud800"}}},
        "application/json",
    )
    raw = to_raw(draft)
    assert raw.target == b"/t-catalog/_search?explain=true&size=3"
    assert (b"X-User-Id", b"u1X-Evil: 1") in raw.headers  # no header injection
    assert (b"Content-Type", b"application/json") in raw.headers
    assert b"\xed\xa0\x80" in raw.body  # the lone surrogate, as the invalid bytes it stands for
    rng_one, rng_two = random.Random(5), random.Random(5)
    one = [mutated(draft, rng_one, WORLD) for _ in range(20)]
    two = [mutated(draft, rng_two, WORLD) for _ in range(20)]
    assert one == two
    assert len({m.wire(b"h") for m in one}) > 1


def test_fuzzed_sends_every_draft_then_mutants() -> None:
    drafts = [Draft("GET", "/", label="a"), Draft("GET", "/_affinity/health", label="b")]
    out = list(fuzz_generate.fuzzed(drafts, 10, 1, WORLD))
    assert [r.target for r in out[:2]] == [b"/", b"/_affinity/health"]
    assert len(out) == 10
