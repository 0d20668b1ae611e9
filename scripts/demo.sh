#!/usr/bin/env bash
# The main job, end to end on a fresh machine: install, start the local OpenSearch node,
# bootstrap, load the MovieLens sample (9,742 movies, 100,836 ratings), and print one query's
# results generic beside personalized for a sample user.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
A=.venv/bin/affinity
if [ -z "${OPENSEARCH_URL:-}" ]; then
  $A engine start
fi
$A bootstrap
$A ingest catalog data/movielens/movies.csv --quiet
$A ingest events data/movielens/ratings.csv --format movielens --boost-profile movielens --quiet
# User 571 rates horror highest; "man" matches few horror titles in plain relevance order.
$A search --user 571 --boost-profile movielens --explain "man"
# Autocomplete and facets (issue 11): the suggestions index from the catalog (and, once the
# proxy has served searches, the queries users ran), then user 571's suggestions for "th"
# and the genre facet of the search "th", generic beside personalized.
$A suggestions build --boost-profile movielens
$A suggestions show --user 571 --boost-profile movielens th

# A carousel and a banner for the same user, through the proxy (README, "Recommendation
# carousels" and "Banners and offers: placements").
$A recommendations build
AFFINITY_FOLD_PROFILE=movielens $A serve --port 8800 &
SERVE=$!
trap 'kill $SERVE' EXIT
for _ in $(seq 1 30); do curl -sf localhost:8800/_affinity/health >/dev/null && break; sleep 1; done
H=(-H 'X-User-Id: 571' -H 'X-Boost-Profile: movielens' -H 'content-type: application/json')
echo "for_you for user 571:"
curl -s -XPOST localhost:8800/_affinity/recommend "${H[@]}" -d '{"model": "for_you", "size": 5}' |
  .venv/bin/python -c 'import json, sys; r = json.load(sys.stdin); print(r["personalization"]["why"]); [print(" ", h["_source"]["title"]) for h in r["hits"]["hits"]]'
echo "related to The Shining (1258) for user 571:"
curl -s -XPOST localhost:8800/_affinity/recommend "${H[@]}" -d '{"model": "related", "item": "1258", "size": 5}' |
  .venv/bin/python -c 'import json, sys; r = json.load(sys.stdin); print(r["personalization"]["why"]); [print(" ", h["_source"]["title"]) for h in r["hits"]["hits"]]'
echo "home_hero banner for user 571:"
curl -s 'localhost:8800/_affinity/placements?slot=home_hero' "${H[@]}"
echo
