#!/usr/bin/env bash
# The test command: install, lint, then every test (unit, golden, and integration against a
# real OpenSearch node that the test session starts from engine/, or OPENSEARCH_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/lint-imports --no-cache  # the layer contract (pyproject.toml [tool.importlinter])
exec .venv/bin/python -m pytest -q "$@"
