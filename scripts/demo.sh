#!/usr/bin/env bash
# The README's first command: install, start the embedded stack, run a realistic workload
# (a backfill of history, then about a minute of live traffic), print what happened, stop.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/runlens demo "$@"
