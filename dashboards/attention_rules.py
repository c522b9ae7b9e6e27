"""The rules of ``dashboards.attention`` as numbers: each reason's thresholds, points and cap, and
the windows (baseline, error signature lookback). The score in Python (``attention``), the facts
query (``attention_facts``) and the panel's SQL (``attention_panel``) all read them from here."""

from __future__ import annotations

from datetime import timedelta

BASELINE_WINDOWS = 4
BASELINE_MAX = timedelta(days=28)
SIGNATURE_LOOKBACK = timedelta(days=30)

MIN_RUNS = 10
MIN_FAILED = 3
PRIOR_FAILED, PRIOR_RUNS = 1, 20           # baseline prior: 5 %
FAILURE_RATIO, FAILURE_EXCESS, FAILURE_Z = 2.0, 0.05, 3.0
FAILURE_POINTS = 100.0                     # per unit of rate above baseline (1 per pp)

NEW_ERRORS_HISTORY = 20
NEW_ERRORS_MIN_HITS = 2
NEW_ERRORS_POINTS, NEW_ERRORS_CAP = 10.0, 5

VERSION_MIN_RUNS = 10
SLOWDOWN_RATIO = 1.5
SLOWDOWN_POINTS, SLOWDOWN_CAP = 20.0, 4.0
VERSION_FAILURE_EXCESS = 0.10

SILENT_MIN_RUNS, SILENT_MIN_HOURS = 20, 12
SILENT_MIN_SECONDS = 3 * 3600
SILENT_GAP_FACTOR = 2.0
SILENT_POINTS, SILENT_CAP = 10.0, 4.0

STUCK_MIN_MS, STUCK_P99_FACTOR, STUCK_NO_P99_MS = 300_000, 5, 3_600_000
STUCK_POINTS, STUCK_CAP = 5.0, 10

QUEUE_MIN_SAMPLES = 10
QUEUE_MIN_P95_MS = 60_000
QUEUE_RATIO = 3.0
QUEUE_POINTS, QUEUE_CAP = 5.0, 8.0

DELAYS_MIN = 5
DELAYS_LATE_SHARE = 0.20
DELAYS_LATE_AVG_MS = 60_000
DELAYS_POINTS = 0.3                        # per percent of delays late

REPLAYS_MIN_FAILED = 2
REPLAYS_FAILED_SHARE = 0.5
REPLAYS_POINTS, REPLAYS_CAP = 5.0, 6

REASONS = ("failure_rate", "new_errors", "version_regression", "silent", "stuck_runs", "queue_growing",
           "late_delays", "replays_failing")
MAX_LIMIT = 1000
