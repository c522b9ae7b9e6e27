"""Dashboard 2: workflow drill-down (step bottlenecks, versions, delay steps)."""

from __future__ import annotations

from dashboards.definitions.filters import RUNS, sql_text, step_filter
from dashboards.definitions.model import Dashboard, Panel

# Bands of the run duration histogram and their run_stats_state columns (migration 007).
DURATION_BANDS = (
    ("< 1 s", "duration_lt_1s"), ("1-5 s", "duration_1_5s"), ("5-15 s", "duration_5_15s"),
    ("15-60 s", "duration_15_60s"), ("1-5 min", "duration_1_5min"), ("5-30 min", "duration_5_30min"),
    ("30 min +", "duration_30min_plus"),
)

STEPS = step_filter()

# Step statistics over the time range: whole days from step_stats_daily, whole hours of the
# partial first and last day from step_stats_hourly, the remaining minutes from step_stats_state
# (migration 007). Same columns, same sums and digests as step_stats_state alone, a fraction
# of the rows and of the t-digest centroids to merge.
def _whole(column: str, seconds: int) -> str:
    """Rows whose period (starting at ``column``, its last minute ``seconds`` later) lies inside."""
    return f"{column} >= $__fromTime AND {column} + INTERVAL {seconds} SECOND <= $__toTime"


STEP_STATS = (
    "(SELECT * FROM step_stats_daily WHERE " + _whole("bucket", 86340)
    + " UNION ALL SELECT * FROM step_stats_hourly WHERE " + _whole("bucket", 3540)
    + " AND NOT (" + _whole("toStartOfDay(bucket)", 86340) + ")"
    + " UNION ALL SELECT * FROM step_stats_state WHERE $__timeFilter(bucket) AND NOT ("
    + _whole("toStartOfHour(bucket)", 3540) + "))"
)

WORKFLOW = Dashboard(
    uid="runlens-workflow",
    title="runlens / Workflow drill-down",
    description="Where a workflow spends its time, how its versions compare, how late its delays resume.",
    panels=(
        Panel(1, "Step bottlenecks (share of run time)", "barchart", sql_text(f"""
            SELECT concat(workflow_id, ' / ', step_name) AS step,
                   round(100 * sum(duration_sum_ms) / sum(sum(duration_sum_ms)) OVER (PARTITION BY workflow_id), 1)
                       AS share_pct
            FROM {STEP_STATS}
            WHERE step_type != 'delay' AND {STEPS}
            GROUP BY workflow_id, step_name
            ORDER BY share_pct DESC, step LIMIT 15"""),
            (0, 0, 12, 10), unit="percent", horizontal=True,
            description="Each step's share of its workflow's working time (delays excluded)."),
        Panel(2, "Slowest steps", "table", sql_text(f"""
            SELECT workflow, step, type, runs, failure_pct,
                   round(q[1]) AS p50_ms, round(q[2]) AS p95_ms, round(q[3]) AS p99_ms
            FROM (
                SELECT workflow_id AS workflow, step_name AS step, step_type AS type,
                       sum(executions) AS runs,
                       round(100 * sum(failed) / sum(executions), 2) AS failure_pct,
                       quantilesTDigestMerge(0.5, 0.95, 0.99)(duration_digest) AS q
                FROM {STEP_STATS}
                WHERE step_type != 'delay' AND {STEPS}
                GROUP BY workflow, step, type
            )
            ORDER BY p95_ms DESC LIMIT 20"""),
            (12, 0, 12, 10), unit="ms"),
        Panel(3, "Run duration histogram", "barchart", sql_text(f"""
            SELECT duration, runs
            FROM (
                SELECT [{', '.join(f"'{label}'" for label, _ in DURATION_BANDS)}] AS bands,
                       [{', '.join(f"sum({column})" for _, column in DURATION_BANDS)}] AS counts
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND {RUNS}
            )
            ARRAY JOIN bands AS duration, counts AS runs
            WHERE runs > 0"""),
            (0, 10, 12, 8), unit="short",
            description="Finished runs by duration (start to finish), in the minute they finished."),
        Panel(4, "Version comparison", "table", sql_text(f"""
            SELECT workflow, version, runs, failure_pct, round(q[1]) AS p50_ms, round(q[2]) AS p95_ms,
                   first_seen, last_seen
            FROM (
                SELECT workflow_id AS workflow, workflow_version AS version,
                       sum(finished) AS runs,
                       round(100 * sum(failed) / nullIf(sum(finished), 0), 2) AS failure_pct,
                       quantilesTDigestMerge(0.5, 0.95)(duration_digest) AS q,
                       min(bucket) AS first_seen, max(bucket) AS last_seen
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND finished > 0 AND {RUNS}
                GROUP BY workflow, version
            )
            ORDER BY workflow, version DESC"""),
            (12, 10, 12, 8),
            description="Each workflow version's runs, failure rate and duration, newest first."),
        Panel(5, "Delay steps: lateness of resumes", "timeseries", sql_text(f"""
            SELECT $__timeInterval(bucket) AS time,
                   sum(lateness_sum_ms) / sum(delays) AS avg_lateness,
                   toFloat64(max(lateness_max_ms)) AS max_lateness
            FROM step_stats_state
            WHERE $__timeFilter(bucket) AND delays > 0 AND {STEPS}
            GROUP BY time ORDER BY time"""),
            (0, 18, 12, 8), unit="ms", min_interval="5m",
            description="How long after its scheduled time a delay step resumed."),
        Panel(6, "Delay steps by workflow", "table", sql_text(f"""
            SELECT workflow_id AS workflow, step_name AS step, sum(delays) AS resumes,
                   sum(delays_late) AS late, round(100 * late / resumes, 1) AS late_pct,
                   round(sum(lateness_sum_ms) / resumes) AS avg_lateness_ms,
                   toFloat64(max(lateness_max_ms)) AS max_lateness_ms
            FROM {STEP_STATS}
            WHERE delays > 0 AND {STEPS}
            GROUP BY workflow, step ORDER BY late_pct DESC, resumes DESC, workflow, step"""),
            (12, 18, 12, 8), description="A resume is late when more than 1 s after its schedule."),
    ),
)
