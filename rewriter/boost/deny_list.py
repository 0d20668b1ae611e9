"""The suggestions deny list (issue 11, item 1): words and phrases never suggested.

A YAML file, checked like a boost profile (boost/yaml_fields.py: every problem at
file:line:column, all of them in one run):

    # profiles/suggestions_deny.yaml
    deny:
      - casino          # a word: a suggestion holding it as a whole word is dropped
      - free money      # a phrase: dropped when its words appear in this order

Matching ignores case and accents' composition (NFKC) and compares whole words. Pure: no
I/O beyond reading the file in `load_deny_list`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from yaml.nodes import Node

from rewriter.boost import yaml_fields as y
from rewriter.boost.yaml_fields import BoostProfileError

_WORD = re.compile(r"\w+", re.UNICODE)


def words(text: str) -> tuple[str, ...]:
    """`text` as lower-case words (NFKC), for whole-word matching."""
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text).casefold()))


def parse_deny_list(data: str | bytes, source: str = "<string>") -> tuple[str, ...]:
    """The denied words and phrases; BoostProfileError listing every problem."""
    raw = data.encode() if isinstance(data, str) else data
    root = y.compose(raw, source)
    if root is None:
        return ()
    ctx = y.Ctx(source)
    values = y.collect(ctx, lambda: y.section(root, ctx, {"deny": _entries}, "deny list"))
    if ctx.errors:
        raise BoostProfileError.many(ctx.errors)
    assert isinstance(values, dict)
    return values.get("deny", ())  # type: ignore[return-value]


def _entries(node: Node, ctx: y.Ctx) -> tuple[str, ...]:
    out = []
    for i, item in enumerate(y.items(node, ctx, "deny")):
        where = y.at(ctx, i)
        text = y.collect(where, lambda n=item, c=where: y.text(n, c))
        if isinstance(text, str):
            if not words(text):
                ctx.errors.append(y.error_at(where, item, f"{text!r} holds no word to match"))
                continue
            out.append(text)
    return tuple(out)


def load_deny_list(path: str | Path) -> tuple[str, ...]:
    p = Path(path)
    return parse_deny_list(p.read_bytes(), source=str(p))


def denied(text: str, deny: Sequence[str]) -> str | None:
    """The first deny-list entry `text` contains as whole words (in order), else None."""
    have = words(text)
    for entry in deny:
        want = words(entry)
        if any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1)):
            return entry
    return None
