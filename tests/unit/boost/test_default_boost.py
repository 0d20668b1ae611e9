"""One decision, one place: which boost profile is used where none is named.

The proxy, the in-process API (`rewriter.api`) and `affinity ingest events` once decided it
three ways (the API refused when no file was called `default`; the import fell back to the
first by name; the proxy did too). They all ask `default_boost_name` now.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from rewriter import config
from rewriter.api import Personalizer
from rewriter.boost.profile import BoostProfile, default_boost_name
from rewriter.ingest.event_files import fold_boost
from rewriter.serve.app import create_app


@pytest.mark.parametrize(
    ("loaded", "chosen"),
    [
        ({"default", "movielens"}, "default"),
        ({"retail", "zeta"}, "retail"),
        (set(), "default"),
    ],
)
def test_default_boost_name(loaded: set[str], chosen: str) -> None:
    assert default_boost_name(loaded) == chosen


def test_proxy_api_and_import_choose_the_same_boost_profile(tmp_path: Path) -> None:
    for name in ("zeta", "retail"):
        (tmp_path / f"{name}.yaml").write_text(f"name: {name}\n")
    settings = replace(config.load({}), secret="unit-secret", boost_dir=tmp_path)
    boosts = {n: BoostProfile(name=n) for n in ("zeta", "retail")}

    proxy = create_app(settings, boost_dir=str(tmp_path)).state.proxy
    api = Personalizer(None, settings, boosts)  # type: ignore[arg-type]  # no search is sent
    imported = fold_boost(settings, boosts=boosts)

    assert proxy.boost_for("catalog", None).name == "retail"
    assert api.boost().name == "retail"
    assert imported.name == "retail"
