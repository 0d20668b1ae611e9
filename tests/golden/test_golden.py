"""Golden rewrite cases: tests/golden/cases/*.json, compared as exact dicts.

Each case holds `request` (the app's body), `user` (a UserAffinity as JSON, or null),
`boost_profile` (keys of a profiles/*.yaml; `name` defaults to "golden"; `users:` lists are
pseudonymized with a fixed test secret), `context` (RequestContext fields; `user_id` is a raw
id, pseudonymized the same way) and `expected` {body, log, and `pins` (the pinned fetch)
when the rules pin}. Regenerate `expected` with
`AFFINITY_REGEN_GOLDEN=1 python -m pytest tests/golden` and review the diff before committing.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from rewriter.boost.profile import BoostProfile, bind_secret, parse_boost_profile
from rewriter.privacy import pseudonymize
from rewriter.profiles.view import UserAffinity
from rewriter.ranking.rewrite import RequestContext, rewrite

CASES = sorted((Path(__file__).parent / "cases").glob("*.json"))
REGEN = os.environ.get("AFFINITY_REGEN_GOLDEN") == "1"
SECRET = b"golden-test-secret-0123456789abcdef"


def _user(data: dict[str, object] | None) -> UserAffinity | None:
    if data is None:
        return None
    fields = dict(data)
    fields["segments"] = tuple(fields.get("segments", ()))  # type: ignore[call-overload]
    return UserAffinity(**fields)  # type: ignore[arg-type]


def _boost(overrides: dict[str, object]) -> BoostProfile:
    text = yaml.safe_dump({"name": "golden", **overrides}, sort_keys=True)
    return bind_secret(parse_boost_profile(text, source="golden"), _pseudonym)


def _pseudonym(raw: str) -> str:
    return pseudonymize(raw, SECRET)


def _context(data: dict[str, object]) -> RequestContext:
    fields = dict(data)
    raw_user = fields.pop("user_id", None)
    if isinstance(raw_user, str):
        fields["user"] = _pseudonym(raw_user)
    return RequestContext(**fields)  # type: ignore[arg-type]


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 12


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = json.loads(path.read_text())
    request = case["request"]
    before = copy.deepcopy(request)
    result = rewrite(
        request,
        _user(case["user"]),
        _boost(case.get("boost_profile", {})),
        _context(case.get("context", {})),
    )
    assert request == before, "rewrite mutated the request body"
    produced = {"body": result.body, "log": result.log}
    if result.pins is not None:
        produced["pins"] = {"organic_from": result.pins.organic_from, "fetch": result.pins.fetch}
    if REGEN:
        case["expected"] = produced
        path.write_text(json.dumps(case, indent=2, ensure_ascii=False) + "\n")
        return
    assert "expected" in case, f"{path.name}: no expected output; regenerate and review"
    assert produced == case["expected"]
