#!/usr/bin/env bash
# The README's second command: install runlens with its test dependencies, lint (ruff), type-check (mypy) and run the suite
# (unit, integration against the embedded stack, shortened reliability scenarios).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
.venv/bin/ruff check .   # set -e: a lint or type failure fails the script
.venv/bin/mypy           # the packages and settings in pyproject.toml [tool.mypy]
exec .venv/bin/python -m pytest "$@"
