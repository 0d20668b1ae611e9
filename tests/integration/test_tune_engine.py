"""`affinity evaluate --tune` on a generated shop, against the real engine's first pass."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from opensearchpy import OpenSearch

from rewriter import config
from rewriter.boost.horizons import ItemMemory, SessionIntent
from rewriter.boost.profile import load_boost_profiles, parse_boost_profile
from rewriter.measure import evaluate as ev
from rewriter.measure import evaluate_tune as tune
from rewriter.measure import shop as synthetic_shop


def _seen_split(scorer: tune.Scorer, boost: object) -> tuple[float, float]:
    ndcg = np.array(scorer.scores(boost).ndcg)  # type: ignore[arg-type]
    seen = np.array([c.seen_target for c in scorer.cases])
    return float(ndcg[seen].mean()), float(ndcg[~seen].mean())


def test_tuning_on_the_synthetic_shop(
    opensearch: OpenSearch, bootstrapped: config.Settings, tmp_path: Path
) -> None:
    """The shop has what each signal exploits: item memory lifts the items the shopper saw,
    session intent the next item overall; the tuned profile is a valid YAML patch whose
    never-seen NDCG@10 on validation did not drop (the guarded objective)."""
    made = synthetic_shop.generate(users=200, items=240, seed=5)
    paths = synthetic_shop.write(made, tmp_path)
    boost = load_boost_profiles("profiles")["default"]
    opts = ev.Options(
        events=paths["events.jsonl"],
        catalog=paths["catalog.jsonl"],
        cutoff=ev.parse_cutoff("last"),
        prefix=bootstrapped.indices.prefix + "tune-",
        sample_size=150,
        fallback="category_words",
        positive_types=("view", "add_to_cart", "purchase"),
        exclude_seen=False,
    )
    result = tune.run(opensearch, bootstrapped, boost, opts)
    assert len(result.on_test.cases) == 150 and len(result.on_validation.cases) == 150
    base = replace(boost, session=SessionIntent(), item_memory=ItemMemory())
    memory = replace(base, item_memory=ItemMemory(weight=1.0))
    session = replace(base, session=SessionIntent(weights={"brand": 1.0, "item": 1.0}))
    test = result.on_test
    assert _seen_split(test, memory)[0] > _seen_split(test, base)[0] + 0.1
    assert test.ndcg(session) > test.ndcg(base)
    start_never = _seen_split(result.on_validation, boost)[1]
    assert _seen_split(result.on_validation, result.best)[1] >= start_never - tune.GUARD
    patch = result.report.split("# best boost profile (YAML patch)\n")[1]
    tuned = parse_boost_profile("name: tuned\n" + patch)
    assert (tuned.alpha, tuned.session, tuned.item_memory) == (
        result.best.alpha,
        result.best.session,
        result.best.item_memory,
    )
    assert "validation - test gap" in result.report
