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
