"""The requests the proxy fuzzer (measure/fuzz.py) sends: raw HTTP requests, byte for byte.

Two sources:

- `hostile` (here): hand-written abuse: deep JSON nesting, huge numbers and NaN spellings, invalid
  UTF-8, NUL bytes, header abuse, path traversal, index expressions, oversized bodies, wrong
  content types, unsupported methods, malformed HTTP.

A request is raw bytes (`RawRequest`) so that what no HTTP client library would send (a NUL
in a header, an invalid UTF-8 path, `/../`) reaches the server as written.
The other source, schemathesis cases from the proxy's OpenAPI description and their mutants,
is measure/fuzz_generate.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

Headers = tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True)
class RawRequest:
    """One HTTP/1.1 request as sent: `target` is the request line's path and query, raw."""

    method: bytes
    target: bytes
    headers: Headers = ()
    body: bytes = b""
    label: str = ""
    content_length: bool = True  # False: no Content-Length header (chunked bodies bring their own)
    half_close: bool = False  # shut the write side after sending (a client that gave up)

    def wire(self, host: bytes) -> bytes:
        """The bytes on the wire (Connection: close, so the response ends at EOF)."""
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: " + host]
        lines += [name + b": " + value for name, value in self.headers]
        if self.content_length:
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        lines.append(b"Connection: close")
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


@dataclass(frozen=True)
class World:
    """What the fuzz world holds: the catalog alias, users with profiles, loaded boost
    profiles, and affinity's private indices (which must stay unreadable)."""

    catalog: str
    users: Sequence[str]
    boost_profiles: Sequence[str]
    private: Sequence[str] = field(default_factory=tuple)
    item_ids: Sequence[str] = field(default_factory=tuple)


def json_bytes(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _req(
    method: str,
    target: str | bytes,
    body: bytes = b"",
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    label: str = "",
    **options: bool,
) -> RawRequest:
    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")

    return RawRequest(
        raw(method),
        raw(target),
        tuple((raw(k), raw(v)) for k, v in headers),
        body,
        label or f"{method} {target!r}"[:80],
        **options,
    )


JSON_CT = ("Content-Type", "application/json")
NDJSON_CT = ("Content-Type", "application/x-ndjson")


# --------------------------------------------------------------------------- hostile cases
def _nested(depth: int, leaf: bytes = b"{}", kind: str = "object") -> bytes:
    """`{"a":{"a":...}}` or `[[...]]`, `depth` levels deep, as bytes (no recursion)."""
    if kind == "array":
        return b"[" * depth + leaf + b"]" * depth
    return b'{"a":' * depth + leaf + b"}" * depth


def _deep_query(depth: int) -> bytes:
    inner = b'{"bool":{"must":[' * depth + b'{"match_all":{}}' + b"]}}" * depth
    return b'{"query":' + inner + b"}"


DEPTHS = (100, 199, 200, 201, 254, 255, 300, 1000, 1024, 1025, 10_000)


def nesting_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search"
    for depth in DEPTHS:
        yield _req("POST", search, _nested(depth), [JSON_CT], f"search body nested {depth}")
        yield _req("POST", search, _deep_query(depth), [JSON_CT], f"bool query nested {depth}")
        yield _req("POST", f"/{w.catalog}/_count", _nested(depth), [JSON_CT], f"count {depth}")
        deep_line = _nested(depth, kind="array")
        yield _req(
            "POST", "/_msearch", b"{}\n" + deep_line + b"\n", [NDJSON_CT], f"msearch {depth}"
        )
        yield _req(
            "POST",
            "/_msearch",
            _nested(depth) + b"\n{}\n",
            [NDJSON_CT],
            f"msearch header nested {depth}",
        )
        event = b'{"type":"view","item_id":"i1","timestamp":1700000000,"context":'
        yield _req(
            "POST",
            "/events",
            event + _nested(depth) + b"}",
            [JSON_CT, ("X-User-Id", "deep")],
            f"event nested {depth}",
        )
        yield _req("POST", "/events", _nested(depth, kind="array"), [JSON_CT], f"events {depth}")
        context = _nested(min(depth, 2000))
        yield _req(
            "POST", search, b"{}", [JSON_CT, ("X-User-Context", context)], f"context {depth}"
        )


NUMBERS: tuple[bytes, ...] = (
    b"1e400",
    b"-1e400",
    b"1e-400",
    b"2e308",
    b"1180591620717411303424",  # 2**70
    b"9223372036854775808",  # 2**63
    b"18446744073709551616",  # 2**64
    b"-9223372036854775809",
    b"1" + b"0" * 400,
    b"-0",
    b"-0.0",
    b"NaN",
    b"nan",
    b"Infinity",
    b"-Infinity",
    b"1e30",
    b"0.5",
    b"-1",
    b'"1e400"',
    b'"NaN"',
)


def number_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search"
    for n in NUMBERS:
        for key in (b"size", b"from", b"min_score", b"terminate_after", b"timeout"):
            body = b'{"' + key + b'":' + n + b"}"
            yield _req("POST", search, body, [JSON_CT], f"search {key.decode()}={n[:20]!r}")
        query = b'{"query":{"range":{"price":{"gte":' + n + b"}}}}"
        yield _req("POST", search, query, [JSON_CT], f"range {n[:20]!r}")
        yield _req("POST", "/_msearch", b"{}\n" + b'{"size":' + n + b"}\n", [NDJSON_CT])
        for key in (b"timestamp", b"position", b"value", b"quantity", b"price"):
            event = (
                b'{"user_id":"num","type":"view","item_id":"i1","timestamp":1700000000,"'
                + key
                + b'":'
                + n
                + b"}"
            )
            yield _req("POST", "/events", event, [JSON_CT], f"event {key.decode()}={n[:20]!r}")
        text = n.strip(b'"').decode()
        for param in ("size", "from"):
            yield _req("GET", f"{search}?{param}={quote(text)}", label=f"?{param}={text[:20]}")
    for text in ("١٢", "½", "0x10", "1_000", " 5 ", "+5", "5.0", "", "9" * 5000):
        yield _req("GET", f"{search}?size={quote(text)}", label=f"?size={text[:20]}")


BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80")


def encoding_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search".encode()
    for bad in BAD_UTF8:
        body = b'{"query":{"match":{"title":"' + bad + b'"}}}'
        yield _req("POST", search, body, [JSON_CT], f"body bytes {bad!r}")
        yield _req("POST", search, bad, [JSON_CT], f"body is {bad!r}")
        yield _req("POST", b"/" + bad + b"/_search", b"{}", [JSON_CT], f"raw path {bad!r}")
        pct = "".join(f"%{b:02X}" for b in bad).encode()
        yield _req("POST", b"/" + pct + b"/_search", b"{}", [JSON_CT], f"%-path {bad!r}")
        yield _req("GET", search + b"?q=" + pct + b"&explain=" + pct, label=f"query {bad!r}")
        yield _req("POST", search, b"{}", [JSON_CT, ("X-User-Id", bad)], f"user {bad!r}")
        yield _req("POST", search, b"{}", [JSON_CT, ("X-User-Context", b'{"geo":"' + bad + b'"}')])
        yield _req("POST", search, b"{}", [JSON_CT, ("X-Boost-Profile", bad)])
        yield _req("POST", search, b"{}", [JSON_CT, ("X-Personalization", bad)])
        event = b'{"type":"view","item_id":"' + bad + b'","timestamp":1700000000}'
        yield _req("POST", "/events", event, [JSON_CT, ("X-User-Id", bad)], f"event {bad!r}")
        yield _req("POST", "/events", event + b"\n" + event, [NDJSON_CT], f"ndjson {bad!r}")
        yield _req("POST", "/_msearch", b"{}\n" + body + b"\n", [NDJSON_CT], f"msearch {bad!r}")
        ctype = b"application/json; charset=" + bad
        yield _req("POST", search, b"{}", [("Content-Type", ctype)], f"charset {bad!r}")
    latin1 = '{"query":{"match":{"title":"caf\u00e9"}}}'.encode("latin-1")
    yield _req("POST", search, latin1, [("Content-Type", "application/json; charset=latin-1")])
    yield _req("POST", search, b"\xef\xbb\xbf{}", [JSON_CT], "UTF-8 BOM")
    yield _req("POST", search, "{}".encode("utf-16"), [JSON_CT], "UTF-16 body")


def nul_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search"
    yield _req("POST", search, b'{"query":{"match":{"title":"a\\u0000b"}}}', [JSON_CT])
    yield _req("POST", search, b'{"query":{"match":{"title":"a\x00b"}}}', [JSON_CT], "raw NUL")
    yield _req("POST", search, b"\x00", [JSON_CT], "body is NUL")
    yield _req("POST", search, b"{}\x00", [JSON_CT], "NUL after body")
    for name in ("X-User-Id", "X-User-Context", "X-Boost-Profile", "X-Personalization"):
        yield _req("POST", search, b"{}", [JSON_CT, (name, b"a\x00b")], f"NUL in {name}")
        yield _req("POST", search, b"{}", [JSON_CT, (name, b'{"a":"\\u0000"}')])
    yield _req("POST", search, b"{}", [("Content-Type", b"application/json\x00x")])
    yield _req("POST", search, b"{}", [(b"X-A\x00b", b"1")], "NUL in header name")
    for target in ("/%00/_search", f"/{w.catalog}%00/_search", f"{search}%00", f"{search}?q=%00"):
        yield _req("POST", target, b"{}", [JSON_CT])
    yield _req("POST", f"/{w.catalog}\x00/_search".encode(), b"{}", [JSON_CT], "raw NUL path")
    yield _req("POST", "/_msearch", b"{}\n{\x00}\n", [NDJSON_CT])
    yield _req("POST", "/_msearch", b'{"index":"a\\u0000b"}\n{}\n', [NDJSON_CT])
    yield _req("POST", f"/{w.catalog}/_count?q=%00", b"", [], "count NUL param")
    yield _req("GET", "/_search/scroll?scroll_id=%00&scroll=1m", label="scroll NUL id")
    event = b'{"user_id":"a\\u0000b","type":"view","item_id":"i\\u0000","timestamp":1700000000}'
    yield _req("POST", "/events", event, [JSON_CT], "event NUL")
    yield _req("POST", "/events", b"\x00\n\x00", [NDJSON_CT], "events NUL lines")


def header_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search"
    body = b'{"query":{"match":{"title":"shoe"}}}'
    user = w.users[0] if w.users else "u"
    yield _req("POST", search, body, [JSON_CT, ("X-User-Id", "u" * 1_000_000)], "1 MB user id")
    yield _req("POST", search, body, [JSON_CT, ("X-Junk", "j" * 200_000)], "200 kB header")
    yield _req("POST", search, body, [JSON_CT, *[("X-F", "v")] * 500], "500 headers")
    yield _req(
        "POST", search, body, [JSON_CT, ("X-User-Id", user), ("X-User-Id", "other")], "2 users"
    )
    yield _req("POST", search, body, [JSON_CT, ("X-User-Id", ""), ("X-User-Id", user)])
    yield _req("POST", search, body, [JSON_CT, ("X-User-Id", "  ")], "blank user")
    for ctx in (
        "not json",
        "[]",
        "null",
        '"text"',
        "5",
        "{",
        '{"device": 5, "geo": ["DE"]}',
        '{"device": {"a": 1}}',
        '{"device": "' + "m" * 100_000 + '"}',
        "{" + ",".join(f'"k{i}": {i}' for i in range(5000)) + "}",
        '{"device": NaN}',
        '{"geo": 1e400}',
        "{}" * 2,
    ):
        headers = [JSON_CT, ("X-User-Id", user), ("X-User-Context", ctx)]
        yield _req("POST", search, body, headers, f"context {ctx[:30]!r}")
    for name in ("../../etc/passwd", "default/../retail", "", " ", "DEFAULT", "x" * 10_000):
        yield _req("POST", search, body, [JSON_CT, ("X-Boost-Profile", name)])
    for value in ("off", "OFF ", "0", "false", "no", "maybe", "", "x" * 10_000):
        yield _req("POST", search, body, [JSON_CT, ("X-Personalization", value)])
    yield _req("POST", search, body, [JSON_CT, ("X-Boost-Profile", "default")] * 2)
    yield _req("POST", search, body, [JSON_CT, JSON_CT, ("Content-Type", "text/plain")])
    yield _req("POST", search, body, [("Content-Type", "a" * 50_000)], "huge content type")
    yield _req("POST", "/events", b"[]", [JSON_CT, ("X-User-Id", "u" * 1_000_000)])
    yield _req("POST", search, body, [JSON_CT, ("Expect", "100-continue")], "expect")
    yield _req("POST", search, body, [JSON_CT, ("Transfer-Encoding", "gzip")], "TE gzip")
    yield _req("POST", search, body, [JSON_CT, ("Content-Encoding", "gzip")], "CE gzip")
    yield _req("GET", "/_affinity/health", label="health", headers=[("Host", "evil")])


def traversal_cases(w: World) -> Iterator[RawRequest]:
    c = w.catalog
    targets = (
        "/../_cluster/health",
        "/..",
        "/%2e%2e/_search",
        "/%2E%2E/%2E%2E/_cluster/settings",
        f"/{c}/../_bulk",
        f"/{c}/..%2f_bulk",
        f"/{c}%2f_search",
        f"/{c}%2F..%2F_doc%2F1/_count",
        f"/{c}/_search/../../_cluster/health",
        "//_search",
        "/./_search",
        f"/{c}/./_search",
        "/_search%2fscroll",
        "/_search/scroll/..",
        "/_affinity/../_cat/indices",
        "/_affinity/health/..",
        "/events/..",
        "/%5c..%5c_cluster",
        "/..\\_cluster",
        f"/{c}/_search?path=/../../_bulk",
        "http://127.0.0.1:9200/_cluster/health",
        "*",
        "",
        "_search",
        f"/{c}//_search",
        f"/{c}/_search/",
        f"/{c}/_search;x=1",
        f"/{c}/_search#frag",
        "/" + "a/" * 5000 + "_search",
        "/" + "x" * 100_000 + "/_search",
    )
    for target in targets:
        for method in ("GET", "POST", "DELETE"):
            yield _req(method, target, b"{}", [JSON_CT], f"{method} {target[:50]}")


def index_expressions(w: World) -> list[str]:
    c = w.catalog
    exprs = [
        "_all",
        "*",
        f"{c}*",
        f"{c},{c}",
        f"{c},-{c}",
        f"-{c}",
        f"{c},-x",
        "-x",
        ".hidden",
        ".kibana",
        ".opendistro_security",
        f"{c},.hidden",
        "x:y",
        f"remote:{c}",
        f"*:{c}",
        "<logs-{now/d}>",
        "<logs-{now/d}>,x",
        f"{c},",
        ",",
        f",{c}",
        f"{c},,x",
        c.upper(),
        "a" * 300,
        "_search",
        "_count",
        "_msearch",
        "_doc",
        "_cat",
        "..",
        ".",
        f"{c}?",
        f"{c}#",
        "a b",
        "a\tb",
        "a\u00e9",
        "a\u202eb",
        "a/b",
        "a\\b",
        "a|b",
        "affinity-profiles",
        "affinity-events",
        "affinity-impressions",
        "affinity-journal",
        "catalog",
        "nonexistent",
        f"{c}+x",
        "+x",
    ]
    for private in w.private:
        exprs += [private, f"{private}-v1", f"{c},{private}", f"{private},{c}", f"{private}*"]
        exprs += [f"{c},-{private}", f"-{private}", private.upper()]
    return exprs


def index_cases(w: World) -> Iterator[RawRequest]:
    body = b'{"query":{"match_all":{}}}'
    for expr in index_expressions(w):
        enc = quote(expr, safe="")
        for endpoint in ("_search", "_count", "_msearch"):
            data = body if endpoint != "_msearch" else b"{}\n" + body + b"\n"
            yield _req("POST", f"/{enc}/{endpoint}", data, [JSON_CT], f"{endpoint} on {expr[:40]}")
        yield _req("GET", f"/{enc}/_search?scroll=1m", label=f"scroll on {expr[:40]}")
        header = json_bytes({"index": expr})
        yield _req("POST", "/_msearch", header + b"\n" + body + b"\n", [NDJSON_CT])
        header = json_bytes({"index": [w.catalog, expr]})
        yield _req("POST", "/_msearch", header + b"\n" + body + b"\n", [NDJSON_CT])


def msearch_cases(w: World) -> Iterator[RawRequest]:
    c = w.catalog
    body = b'{"query":{"match_all":{}}}'
    lines = (
        b"{}\n",
        b"{}\n{}\n{}\n",
        b"[]\n{}\n",
        b'"x"\n{}\n',
        b"5\n{}\n",
        b"null\n{}\n",
        b"{}\n[]\n",
        b"{}\n5\n",
        b"{}\nnull\n",
        b'{}\n"q"\n',
        b'{"index":5}\n{}\n',
        b'{"index":null}\n{}\n',
        b'{"index":[]}\n{}\n',
        b'{"index":{"a":1}}\n{}\n',
        b'{"index":[5, null]}\n{}\n',
        b'{"index":""}\n{}\n',
        b"\n\n\n",
        b"\r\n{}\r\n{}\r\n",
        b"{}",
        b"",
        b"not json\n{}\n",
        (b"{}\n" + body + b"\n") * 2000,
    )
    for data in lines:
        for path in (f"/{c}/_msearch", "/_msearch"):
            yield _req("POST", path, data, [NDJSON_CT], f"msearch {data[:30]!r}")
    yield _req("POST", f"/{c}/_msearch", b"{}\n" + body + b"\n", [JSON_CT], "msearch as JSON")
    yield _req("GET", f"/{c}/_msearch", b"{}\n" + body, [], "msearch no newline")


def body_cases(w: World) -> Iterator[RawRequest]:
    """Bodies that are valid JSON but odd for the rewrite, and oversized bodies."""
    search = f"/{w.catalog}/_search"
    odd = [
        [],
        5,
        "x",
        None,
        True,
        {"query": 5},
        {"query": None},
        {"query": []},
        {"query": "match_all"},
        {"query": {"match": "x"}},
        {"query": {"bool": 5}},
        {"query": {"bool": {"must": 5}}},
        {"query": {"bool": {"should": [5, None, "x"]}}},
        {"query": {"function_score": 5}},
        {"query": {"function_score": {"functions": 5}}},
        {"query": {"multi_match": {"query": 5}}},
        {"query": {"match": {"title": {"query": None}}}},
        {"query": {"match_all": {}}, "rescore": 5},
        {"query": {"match_all": {}}, "rescore": [5]},
        {"query": {"match_all": {}}, "rescore": {"window_size": "x"}},
        {"sort": 5},
        {"sort": [5]},
        {"sort": {"a": {"b": 5}}},
        {"sort": "_score"},
        {"sort": [{"_score": "asc"}, "price"]},
        {"from": "x"},
        {"size": "x"},
        {"from": None, "size": None},
        {"from": 5.5, "size": 2.5},
        {"from": -5},
        {"size": -5},
        {"from": 9990, "size": 100},
        {"size": 10000},
        {"size": 2147483647},
        {"post_filter": 5},
        {"aggs": {"b": {"terms": {"field": "brand"}}}, "size": 0},
        {"_source": False},
        {"_source": 5},
        {"stored_fields": "_none_"},
        {"fields": ["title"], "_source": False},
        {"track_scores": True, "sort": ["price"]},
        {"search_after": [1]},
        {"collapse": {"field": "brand"}},
        {"suggest": {"s": {"text": "x", "term": {"field": "title"}}}},
        {"query": {"ids": {"values": list(w.item_ids)}}},
        {"query": {"script_score": {"query": {"match_all": {}}, "script": {"source": "1/0"}}}},
        {
            "query": {
                "script_score": {"query": {"match_all": {}}, "script": {"source": "for(;;){}"}}
            }
        },
        {"script_fields": {"x": {"script": "params._source"}}},
        {"query": {"terms": {"brand": {"index": "affinity-profiles", "id": "x", "path": "y"}}}},
        {"query": {"more_like_this": {"like": [{"_index": "affinity-events", "_id": "1"}]}}},
        {"pit": {"id": "x"}},
        {"slice": {"id": 0, "max": 2}},
        {"profile": True},
        {"explain": True},
        {"version": True, "seq_no_primary_term": True},
        {"indices_boost": [{"affinity-profiles": 2}]},
        {"ext": {"x": 1}},
        {"": {"": ""}},
        {"a" * 10_000: 1},
        {"query": {"match": {"title": "x" * 100_000}}},
        {"query": {"bool": {"should": [{"term": {"brand": str(i)}} for i in range(2000)]}}},
    ]
    for value in odd:
        data = json_bytes(value)
        label = f"odd body {data[:40]!r}"
        for params in ("", "?explain=true", "?scroll=1m", "?sort=price:asc"):
            yield _req("POST", search + params, data, [JSON_CT, ("X-User-Id", "fuzz-u1")], label)
        yield _req("POST", "/_msearch", b"{}\n" + data + b"\n", [NDJSON_CT], f"msearch {label}")
        yield _req("POST", f"/{w.catalog}/_count", data, [JSON_CT], f"count {label}")
    big = b'{"query":{"match":{"title":"' + b"x " * 6_000_000 + b'"}}}'  # 12 MB
    yield _req("POST", search, big, [JSON_CT], "12 MB search body")
    yield _req("POST", "/_msearch", b"{}\n" + big + b"\n", [NDJSON_CT], "12 MB msearch")
    event = b'{"user_id":"big","type":"view","item_id":"i","timestamp":1700000000}\n'
    yield _req("POST", "/events", event * 300_000, [NDJSON_CT], "20 MB of events")
    yield _req("POST", "/events", event * 10_001, [NDJSON_CT], "10,001 events")
    chunked = b"".join(
        f"{len(event) * 1000:x}\r\n".encode() + event * 1000 + b"\r\n" for _ in range(300)
    )
    yield _req(
        "POST",
        "/events",
        chunked + b"0\r\n\r\n",
        [NDJSON_CT, ("Transfer-Encoding", "chunked")],
        "20 MB chunked events",
        content_length=False,
    )
    yield _req("POST", "/events", b'{"a":1}', [JSON_CT, ("Content-Length", "99999999999")])


def event_cases(w: World) -> Iterator[RawRequest]:
    base = {"user_id": "fuzz-ev", "type": "view", "item_id": "i1", "timestamp": 1_700_000_000}
    odd: list[Any] = [
        [],
        {},
        None,
        "x",
        5,
        [None, 5, "x", []],
        {**base, "user_id": None},
        {**base, "user_id": {"a": 1}},
        {**base, "user_id": "u" * 600},
        {**base, "type": "refund"},
        {**base, "type": 5},
        {**base, "timestamp": "yesterday"},
        {**base, "timestamp": "2100-01-02T00:00:00Z"},
        {**base, "timestamp": "9999-12-31T23:59:59Z"},
        {**base, "timestamp": "0001-01-01"},
        {**base, "timestamp": -1e300},
        {**base, "timestamp": True},
        {**base, "context": {str(i): "x" for i in range(40)}},
        {**base, "context": {"device": ["a"]}},
        {**base, "context": "mobile"},
        {**base, "attributes": {"brand": [str(i) for i in range(200)]}},
        {**base, "attributes": {"brand": [{"a": 1}]}},
        {**base, "attributes": ["brand"]},
        {**base, "opt_out": "maybe"},
        {**base, "event_id": ""},
        {**base, "event_id": 5},
        {**base, "event_id": True},
        {**base, "event_id": "x" * 600},
        {**base, "event_id": "../../_bulk"},
        {**base, "event_id": "_id"},
        {**base, "event_id_generated": "x", "event_id": "e"},
        {**base, "query_id": {"a": 1}},
        {**base, "position": True},
        {**base, "quantity": 0},
        {**base, "value": "12,50"},
        {**base, "price": "x"},
        {**base, "item_id": " "},
        {"\u0000": 1, **base},
    ]
    for value in odd:
        data = json_bytes(value)
        yield _req("POST", "/events", data, [JSON_CT], f"event {data[:40]!r}")
        yield _req("POST", "/events", data + b"\n" + data, [NDJSON_CT], f"ndjson {data[:40]!r}")
    for flag in ("true", "false", "maybe", "", "1", "TRUE", "yes%00"):
        yield _req("POST", f"/events?wait_for_profiles={flag}", json_bytes(base), [JSON_CT])
    for ctype in ("text/plain", "application/xml", "multipart/form-data; boundary=x", "", "*/*"):
        yield _req(
            "POST", "/events", json_bytes([base]), [("Content-Type", ctype)], f"events {ctype}"
        )
    yield _req("POST", "/events", b"<xml/>", [("Content-Type", "application/xml")])
    yield _req(
        "POST", "/events", b"a=1&b=2", [("Content-Type", "application/x-www-form-urlencoded")]
    )
    yield _req("POST", "/events", json_bytes([base]), [NDJSON_CT], "JSON array sent as NDJSON")


def content_type_cases(w: World) -> Iterator[RawRequest]:
    search = f"/{w.catalog}/_search"
    body = b'{"query":{"match_all":{}}}'
    for ctype in (
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/cbor",
        "application/smile",
        "application/yaml",
        "",
        "*/*",
        "application/json; charset=ebcdic",
    ):
        for path in (search, f"/{w.catalog}/_count", "/_search/scroll", "/_msearch"):
            yield _req("POST", path, body, [("Content-Type", ctype)], f"{path[-8:]} as {ctype}")
    yield _req("POST", search, b"query: {match_all: {}}", [("Content-Type", "application/yaml")])
    yield _req("POST", f"/{w.catalog}/_count", b"\xa0", [("Content-Type", "application/cbor")])


URL_PARAMS: tuple[tuple[str, str], ...] = (
    ("format", "yaml"),
    ("format", "cbor"),
    ("format", "smile"),
    ("format", "json"),
    ("format", "txt"),
    ("source", '{"query":{"match_all":{}}}'),
    ("source_content_type", "application/yaml"),
    ("error_trace", "true"),
    ("filter_path", "hits.hits._id"),
    ("filter_path", "-hits"),
    ("filter_path", "responses.hits.total"),
    ("filter_path", "took"),
    ("pretty", "true"),
    ("human", "true"),
    ("typed_keys", "true"),
    ("rest_total_hits_as_int", "true"),
    ("search_type", "dfs_query_then_fetch"),
    ("search_type", "nope"),
    ("pre_filter_shard_size", "-1"),
    ("batched_reduce_size", "1"),
    ("max_concurrent_shard_requests", "0"),
    ("max_concurrent_searches", "0"),
    ("allow_partial_search_results", "maybe"),
    ("request_cache", "x"),
    ("preference", "_only_nodes:nope"),
    ("routing", ","),
    ("stored_fields", "_none_"),
    ("docvalue_fields", "title"),
    ("q", "title:(("),
    ("q", "*:*"),
    ("df", "nope"),
    ("analyzer", "nope"),
    ("default_operator", "XOR"),
    ("lenient", "x"),
    ("timeout", "-1"),
    ("terminate_after", "-1"),
    ("track_total_hits", "x"),
    ("track_scores", "true"),
    ("_source", "false"),
    ("_source_includes", "nope.*"),
    ("seq_no_primary_term", "true"),
    ("version", "true"),
    ("ccs_minimize_roundtrips", "x"),
    ("ignore_unavailable", "true"),
    ("expand_wildcards", "all"),
    ("allow_no_indices", "false"),
    ("index", "_all"),
    ("scroll", "1s"),
    ("scroll", "-1"),
    ("scroll", "99999999d"),
    ("scroll_id", "x"),
    ("rest_total_hits_as_int", "x"),
    ("explain", "true"),
    ("explain", "yes"),
    ("from", "-1"),
    ("size", "0"),
    ("sort", ":"),
    ("sort", "price:sideways"),
    ("sort", "_score:asc,nope:desc"),
    ("wait_for_profiles", "true"),
    ("typed_keys", "x" * 5000),  # a request line longer than the engine reads
)


def param_cases(w: World) -> Iterator[RawRequest]:
    """URL parameters the engine knows (and some it does not) on every endpoint."""
    body = b'{"query":{"match":{"title":"shoes"}}}'
    user = ("X-User-Id", w.users[0] if w.users else "u")
    targets = (
        (f"/{w.catalog}/_search", body, JSON_CT),
        (f"/{w.catalog}/_msearch", b"{}\n" + body + b"\n", NDJSON_CT),
        ("/_msearch", json_bytes({"index": w.catalog}) + b"\n" + body + b"\n", NDJSON_CT),
        (f"/{w.catalog}/_count", body, JSON_CT),
        ("/_search/scroll", b'{"scroll_id":"x"}', JSON_CT),
        ("/", b"", JSON_CT),
        ("/_affinity/health", b"", JSON_CT),
    )
    for name, value in URL_PARAMS:
        query = f"?{quote(name)}={quote(value)}"
        for path, data, ctype in targets:
            for profile in (None, "retail"):
                headers = [ctype, user, *([("X-Boost-Profile", profile)] if profile else [])]
                method = "GET" if path in ("/", "/_affinity/health") else "POST"
                yield _req(method, path + query, data, headers, f"{path[-9:]}?{name}={value}")


def method_cases(w: World) -> Iterator[RawRequest]:
    paths = (
        "/",
        "/_affinity/health",
        "/_affinity/openapi.json",
        "/_search",
        "/_msearch",
        "/_search/scroll",
        f"/{w.catalog}/_search",
        f"/{w.catalog}/_msearch",
        f"/{w.catalog}/_count",
        "/events",
        f"/{w.catalog}/_bulk",
        f"/{w.catalog}/_doc/1",
        f"/{w.catalog}",
        "/_bulk",
        "/_scripts/x",
        "/_cluster/settings",
        f"/{w.catalog}/_delete_by_query",
        "/_snapshot",
    )
    methods = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")
    for path in paths:
        for method in (*methods, "PROPFIND", "FOO", "get", "G E T"):
            yield _req(method, path, b"{}", [JSON_CT], f"{method} {path}")


def protocol_cases(w: World) -> Iterator[RawRequest]:
    """Malformed HTTP; the server answers or closes the connection, never hangs."""
    search = f"/{w.catalog}/_search"
    yield _req("POST", search, b"{}", [JSON_CT, ("Content-Length", "-1")], content_length=False)
    yield _req("POST", search, b"{}", [JSON_CT, ("Content-Length", "x")], content_length=False)
    yield _req("POST", search, b"{}", [JSON_CT, ("Content-Length", "2"), ("Content-Length", "3")])
    yield _req(
        "POST",
        search,
        b"zz\r\n{}\r\n0\r\n\r\n",
        [JSON_CT, ("Transfer-Encoding", "chunked")],
        "bad chunk",
        content_length=False,
    )
    yield _req(
        "POST",
        search,
        b"2\r\n{}\r\n0\r\n\r\n",
        [JSON_CT, ("Transfer-Encoding", "chunked")],
        "chunked and length",
    )
    yield _req(
        "POST",
        search,
        b'{"query"',
        [JSON_CT, ("Content-Length", "1000")],
        "body cut short, client gone",
        content_length=False,
        half_close=True,
    )
    yield _req(
        "POST",
        "/events",
        b'[{"type"',
        [JSON_CT, ("Content-Length", "1000")],
        "events cut short, client gone",
        content_length=False,
        half_close=True,
    )
    yield _req("GET", search.encode() + b" HTTP/1.1\r\nX: y", label="request line injection")
    yield _req("GET", search, headers=[("X-User-Id", b"a\r\nX-Boost-Profile: retail")])
    yield _req("GET", search, headers=[(b"Bad Header", b"1")])
    yield _req("GET", search, headers=[(b"", b"1")])


HOSTILE_GROUPS = (
    nesting_cases,
    number_cases,
    encoding_cases,
    nul_cases,
    header_cases,
    traversal_cases,
    index_cases,
    param_cases,
    msearch_cases,
    body_cases,
    event_cases,
    content_type_cases,
    method_cases,
    protocol_cases,
)


def hostile(w: World) -> list[RawRequest]:
    """Every hand-written hostile request, in a fixed order."""
    return [request for group in HOSTILE_GROUPS for request in group(w)]
