"""Golden cases of the dashboard editor's forms (rewriter/web/forms.py):
tests/golden/editor_forms/*.json hold `yaml` (the draft), `form` (the posted fields) and the
expected `editor` (the rows the form shows for `yaml`), `result` (the draft after the post)
and `problems` (what boost/profile.py's parser says of the result, as `affinity boost check`
prints it). Regenerate with `AFFINITY_REGEN_GOLDEN=1` and review the diff."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from rewriter.boost.profile import BoostProfileError, parse_boost_profile
from rewriter.web import forms

CASES = sorted((Path(__file__).parent / "editor_forms").glob("*.json"))
REGEN = os.environ.get("AFFINITY_REGEN_GOLDEN") == "1"


def _problems(text: str) -> list[str]:
    try:
        parse_boost_profile(text, source="draft.yaml")
    except BoostProfileError as exc:
        return [str(e) for e in exc.errors]
    return []


def test_there_are_cases() -> None:
    assert len(CASES) >= 3


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    produced = {
        "editor": dataclasses.asdict(forms.editor(forms.load(case["yaml"]))),
        "result": forms.apply(case["yaml"], case["form"]),
    }
    produced["problems"] = _problems(produced["result"])
    produced["editor"] = json.loads(json.dumps(produced["editor"]))  # tuples as lists
    if REGEN:
        path.write_text(json.dumps({**case, **produced}, indent=2, ensure_ascii=False) + "\n")
        return
    for key in ("editor", "result", "problems"):
        assert produced[key] == case[key], key
