"""Generated requests for the proxy fuzzer (measure/fuzz.py): property-based cases from the
proxy's own OpenAPI description (serve/openapi.py) by schemathesis, valid ones (positive) and
ones that break the description (negative), half of them steered to the fuzz world's catalog
and users so that personalization, rules and pins run, not only the refusals; then cheap
random mutants of those (a value, a header, a URL parameter, the index, the method, bytes),
since schemathesis draws ~20-40 ms a case in pure Python and a mutant ~0.1 ms.

schemathesis is a development dependency (`pip install -e '.[dev]'`), imported when used.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from rewriter.measure.fuzz_cases import (
    URL_PARAMS,
    RawRequest,
    World,
    index_expressions,
    json_bytes,
)


def _register_media() -> None:
    """Teach schemathesis NDJSON bodies and the `json-object` header format (idempotent)."""
    import schemathesis
    from hypothesis import strategies as st

    def ndjson(_ctx: Any, value: Any) -> bytes:
        items = value if isinstance(value, list) else [value]
        return b"".join(json_bytes(item) + b"\n" for item in items)

    schemathesis.serializer("application/x-ndjson")(ndjson)
    scalars = st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none())
    context = st.dictionaries(
        st.sampled_from(["device", "geo", "referrer", "campaign", "x"]), scalars, max_size=4
    )
    schemathesis.openapi.format("json-object", context.map(json.dumps))


def _steered(spec: dict[str, Any], w: World) -> dict[str, Any]:
    """A copy of `spec` whose index parameter and X-User-Id also name the world's catalog
    and users, so positive cases reach the rewrite (schemathesis draws from `enum`)."""
    doc = json.loads(json.dumps(spec))
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] == "index":
                    param["schema"] = {"type": "string", "enum": [w.catalog, f"{w.catalog},x"]}
                elif param["name"] == "X-User-Id" and w.users:
                    param["schema"] = {"type": "string", "enum": list(w.users)}
    return doc


@dataclass(frozen=True)
class Draft:
    """A request before it is put into bytes: what schemathesis generated, and what the
    mutator changes. `path` is already percent-encoded; `body` is any JSON value, or
    NO_BODY."""

    method: str
    path: str
    query: tuple[tuple[str, Any], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    body: Any = None
    media_type: str | None = None
    label: str = ""


NO_BODY = object()


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _header_bytes(value: str) -> bytes:
    """A header value as bytes; CR and LF are dropped (they would end the header, and a
    Content-Length smuggled in after them makes the server wait for bytes never sent)."""
    return value.replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")


def encode_body(body: Any, media_type: str | None) -> bytes:
    if body is NO_BODY:
        return b""
    if isinstance(body, bytes):
        return body
    if media_type and "ndjson" in media_type and isinstance(body, list):
        return b"".join(json_bytes(item) + b"\n" for item in body)
    text = json.dumps(body, allow_nan=True, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def _quote(text: str) -> str:
    """Percent-encoded UTF-8; a lone surrogate becomes the invalid bytes it stands for."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def to_raw(d: Draft) -> RawRequest:
    """The draft as bytes on the wire."""
    pairs = []
    for key, value in d.query:
        for item in value if isinstance(value, list) else [value]:
            pairs.append(_quote(str(key)) + "=" + _quote(_query_text(item)))
    target = d.path + ("?" + "&".join(pairs) if pairs else "")
    headers = [(k.encode("latin-1", "replace"), _header_bytes(v)) for k, v in d.headers]
    body = encode_body(d.body, d.media_type)
    typed = any(k.lower() == "content-type" for k, _ in d.headers)
    if d.media_type and d.body is not NO_BODY and not typed:
        headers.append((b"Content-Type", d.media_type.encode()))
    target_bytes = target.encode("utf-8", "surrogatepass")
    return RawRequest(d.method.encode(), target_bytes, tuple(headers), body, d.label)


def _draft(case: Any) -> Draft:
    body = case.body
    if type(body).__name__ == "NotSet":
        body = NO_BODY
    mode = case.meta.generation.mode.value if case.meta else "?"
    return Draft(
        method=case.method.upper(),
        path=case.formatted_path,
        query=tuple((case.query or {}).items()),
        headers=tuple((str(k), str(v)) for k, v in (case.headers or {}).items()),
        body=body,
        media_type=case.media_type,
        label=f"{case.method.upper()} {case.operation.path} [{mode}]",
    )


def _strategies(spec: dict[str, Any], w: World) -> list[Any]:
    """One strategy per operation and generation mode (an operation with nothing to break
    has no negative one), over the description as is and steered to the world."""
    import schemathesis
    from schemathesis import GenerationMode

    _register_media()
    out = []
    for doc in (spec, _steered(spec, w)):
        for result in schemathesis.openapi.from_dict(doc).get_all_operations():
            op = result.ok()
            has_input = bool(op.path_parameters or op.query or op.headers or op.body)
            for mode in GenerationMode:
                if mode is GenerationMode.NEGATIVE and not has_input:
                    continue
                out.append(op.as_strategy(generation_mode=mode))
    return out


def generated(spec: dict[str, Any], w: World, count: int, seed: int) -> list[Draft]:
    """`count` drafts drawn by schemathesis from the OpenAPI description: every operation,
    positive (valid by the description) and negative (breaking it), half of them steered to
    the world's catalog and users. Roughly 10-50 ms each: hypothesis draws in pure Python."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed
    from hypothesis import strategies as st

    out: list[Draft] = []

    @hypothesis_seed(seed)
    @settings(
        max_examples=count,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(_strategies(spec, w)))
    def draw(case: Any) -> None:
        out.append(_draft(case))

    draw()
    return out[:count]


# --------------------------------------------------------------------------- mutation
HOSTILE_VALUES: tuple[Any, ...] = (
    None,
    True,
    0,
    -1,
    -0.0,
    2**63,
    2**64 - 1,
    1.7976931348623157e308,
    float("inf"),
    float("nan"),
    1e-320,
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\U0010ffff",
    "\u202e",
    "x" * 5000,
    "_all",
    "*",
    "../..",
    "%00",
    "{now/d}",
    "1e400",
    "NaN",
    [],
    {},
    [None],
    {"": None},
    {"match_all": {}},
    {"script": {"source": "1/0"}},
)

HOSTILE_STRINGS: tuple[str, ...] = (
    *(v for v in HOSTILE_VALUES if isinstance(v, str)),
    "off",
    "true",
    "false",
    "1m",
    "-1",
    "99999999999999999999",
    "price:asc",
    "_score:desc,title",
    "{}",
    "[]",
    "null",
    '{"device":"mobile","geo":"DE"}',
    '{"device":',
    "default",
    "retail",
    "movielens",
)

MUTABLE_HEADERS = ("X-User-Id", "X-User-Context", "X-Boost-Profile", "X-Personalization")

MUTABLE_PARAMS = tuple(sorted({name for name, _ in URL_PARAMS}))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every node of a JSON value (iterative: bodies may be deep)."""
    out: list[tuple[Any, ...]] = []
    stack = [(value, path)]
    while stack and len(out) < 500:
        node, at = stack.pop()
        out.append(at)
        if isinstance(node, dict):
            stack += [(v, (*at, k)) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, (*at, i)) for i, v in enumerate(node)]
    return out


def _set_at(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = json.loads(json.dumps(value, allow_nan=True))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new
    return copy


def _mutate_body(d: Draft, rng: random.Random, w: World) -> Draft:
    body = {} if d.body is NO_BODY or isinstance(d.body, bytes) else d.body
    paths = _leaves(body)
    new = rng.choice((*HOSTILE_VALUES, rng.choice(w.item_ids or ["x"]), w.catalog))
    at = rng.choice(paths)
    if rng.random() < 0.3 and isinstance(body, dict):
        key = rng.choice(("query", "size", "from", "sort", "rescore", "aggs", "_source", "x"))
        return replace(d, body={**body, key: new}, label=d.label + " +key")
    return replace(d, body=_set_at(body, at, new), label=d.label + " ~value")


def _mutate_header(d: Draft, rng: random.Random, w: World) -> Draft:
    name = rng.choice((*MUTABLE_HEADERS, "Content-Type"))
    pool = (*HOSTILE_STRINGS, *w.users, *w.boost_profiles, "application/x-ndjson", "text/plain")
    value = rng.choice(pool)
    kept = tuple(h for h in d.headers if h[0].lower() != name.lower() or rng.random() < 0.3)
    return replace(d, headers=(*kept, (name, value)), label=d.label + f" ~{name}")


def _mutate_query(d: Draft, rng: random.Random, w: World) -> Draft:
    if rng.random() < 0.5:
        name, value = rng.choice(URL_PARAMS)
    else:
        name, value = rng.choice((*MUTABLE_PARAMS, "")), rng.choice(HOSTILE_STRINGS)
    return replace(d, query=(*d.query, (name, value)), label=d.label + f" ?{name}")


def _mutate_index(d: Draft, rng: random.Random, w: World) -> Draft:
    parts = d.path.split("/")
    expr = quote(rng.choice(index_expressions(w)).encode(), safe=rng.choice(("", ",", "/")))
    if len(parts) > 2 and parts[-1].startswith("_") and not parts[1].startswith("_"):
        parts[1] = expr
    else:
        parts.insert(1, expr)
    return replace(d, path="/".join(parts), label=d.label + " ~index")


def _mutate_method(d: Draft, rng: random.Random, w: World) -> Draft:
    method = rng.choice(("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"))
    return replace(d, method=method, label=d.label + f" ~{method}")


def _mutate_bytes(raw: RawRequest, rng: random.Random) -> RawRequest:
    body = bytearray(raw.body)
    kind = rng.randrange(5)
    if kind == 0 and body:  # flip bytes: invalid UTF-8, NULs, control characters
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] = rng.choice((0, 0xFF, 0xC0, 0x80, 0x22, 0x5C))
    elif kind == 1 and body:  # cut short
        del body[rng.randrange(len(body)) :]
    elif kind == 2:  # nest the whole body
        depth = rng.choice((10, 100, 250, 256, 1000, 1100))
        body = bytearray(b'{"query":' * depth + (bytes(body) or b"{}") + b"}" * depth)
    elif kind == 3:  # repeat it (NDJSON pairs, or trailing garbage)
        body = bytearray(bytes(body or b"{}") * rng.randint(2, 50))
    else:
        body[0:0] = rng.choice((b"\xef\xbb\xbf", b"\x00", b"\n\n", b" "))
    return replace(raw, body=bytes(body), label=raw.label + " ~bytes")


DRAFT_MUTATIONS = (_mutate_body, _mutate_header, _mutate_query, _mutate_index, _mutate_method)


def mutated(d: Draft, rng: random.Random, w: World) -> RawRequest:
    """`d` with one to three random mutations; a fifth of them also at the byte level."""
    for _ in range(rng.randint(1, 3)):
        mutation = rng.choices(DRAFT_MUTATIONS, weights=(4, 3, 2, 1, 1))[0]
        d = mutation(d, rng, w)
    raw = to_raw(d)
    return _mutate_bytes(raw, rng) if rng.random() < 0.2 else raw


def fuzzed(drafts: Sequence[Draft], count: int, seed: int, w: World) -> Iterator[RawRequest]:
    """`count` requests: every draft as generated, then mutants of random drafts."""
    rng = random.Random(seed)
    for n in range(count):
        if n < len(drafts):
            yield to_raw(drafts[n])
        else:
            yield mutated(rng.choice(drafts), rng, w)
