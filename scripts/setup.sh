#!/usr/bin/env bash
# Installs what affinity needs on a fresh machine: Java 17 + Maven (Debian packages, only if
# missing), a virtualenv in .venv with affinity and its dev dependencies. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

need_java=0
if ! command -v java >/dev/null 2>&1; then need_java=1
elif ! java -version 2>&1 | grep -qE 'version "(1[7-9]|[2-9][0-9])'; then need_java=1; fi
if [ "$need_java" = 1 ] || ! command -v mvn >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "Installing Java 17 and Maven (apt-get) ..." >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq openjdk-17-jdk-headless maven >/dev/null
  else
    echo "affinity needs Java 17+ and Maven: install them, then run this again." >&2
    exit 1
  fi
fi

# The browser tests (tests/browser) drive Debian's Chromium headless through Playwright,
# pointed at /usr/bin/chromium: no browser download.
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium for the browser tests (apt-get) ..." >&2
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium >/dev/null
  else
    echo "affinity's browser tests need Chromium (/usr/bin/chromium): install it." >&2
  fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
