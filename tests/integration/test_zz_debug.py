from dataclasses import replace
import numpy as np
from opensearchpy import helpers
from rewriter import config, engine as engine_mod, simulate_proxy as sp, simulate as sim, privacy

def test_debug(opensearch, bootstrapped):
    s = replace(bootstrapped, indices=config.Indices(prefix=bootstrapped.indices.prefix + "dbg3-"))
    engine_mod.bootstrap(opensearch, s)
    r = sp.run(opensearch, s, users=300, seed=7)
    world = sim.World(brands=8, categories=8, seed=7)
    rng = np.random.default_rng(7); brand = rng.integers(0, 8, 300); cat = rng.integers(0,8,300); prop = rng.gamma(2, 0.5, 300)
    secret = config.user_secret(s)
    who = {privacy.pseudonymize(f"sim-7-{i}", secret): i for i in range(300)}
    opensearch.indices.refresh(index=f"{s.indices.impressions},{s.indices.events}")
    imps = [h["_source"] for h in helpers.scan(opensearch, index=s.indices.impressions)]
    clicks = {}
    for h in helpers.scan(opensearch, index=s.indices.events, query={"query": {"term": {"type": "click"}}}):
        clicks.setdefault(h["_source"]["query_id"], []).append(h["_source"]["item_id"])
    out = {}
    for d in imps:
        i = who[d["user_id"]]
        fav = [world.items["brand"][int(x)] == brand[i] for x in d["item_ids"]]
        o = out.setdefault(d["variant"], [0, 0, 0.0, 0.0, 0])
        o[0] += 1; o[1] += d["query_id"] in clicks; o[2] += float(np.dot(fav, sim.EXAMINE[:len(fav)])); o[3] += prop[i]
        o[4] += sum(world.items["brand"][int(x)] == brand[i] for x in clicks.get(d["query_id"], []))
    print({k: (v[0], v[1]/v[0], v[2]/v[0], v[3]/v[0], v[4]) for k, v in out.items()})
    assert False
