"""Dashboard 1: runs, success rate, failure rates, durations and peak hours."""

from __future__ import annotations

from dashboards import attention
from dashboards.definitions.failures import WORKFLOW_LINK
from dashboards.definitions.filters import PER_MINUTE, RUNS, is_in, sql_text
from dashboards.definitions.model import Dashboard, Link, Panel

OVERVIEW = Dashboard(
    uid="runlens-overview",
    title="runlens / Overview",
    description="Runs, success rate, failure rates, durations and when the engine is busiest.",
    panels=(
        Panel(1, "Runs finished", "stat", sql_text(f"""
            SELECT sum(finished) AS finished
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (0, 0, 6, 4), unit="short", description="Runs that finished (any outcome) in the time range."),
        Panel(2, "Success rate", "stat", sql_text(f"""
            SELECT round(100 * sum(succeeded) / nullIf(sum(finished), 0), 2) AS success_pct
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (6, 0, 6, 4), unit="percent", decimals=1),
        Panel(3, "Failed runs", "stat", sql_text(f"""
            SELECT sum(failed) AS failed
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (12, 0, 6, 4), unit="short"),
        Panel(4, "Run duration p95", "stat", sql_text(f"""
            SELECT quantilesTDigestMerge(0.95)(duration_digest)[1] AS p95
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS} AND finished > 0"""),
            (18, 0, 6, 4), unit="ms"),
        Panel(5, "Runs per minute by status", "timeseries", sql_text(f"""
            SELECT $__timeInterval(bucket) AS time,
                   sum(succeeded) / {PER_MINUTE} AS success,
                   sum(failed) / {PER_MINUTE} AS failed,
                   sum(stopped) / {PER_MINUTE} AS stopped
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time ORDER BY time"""),
            (0, 4, 12, 8), unit="suffix: runs/min", min_interval="1m", stacked=True, bars=True,
            description="Finished runs per minute, by outcome, in the minute they finished."),
        Panel(6, "Success rate trend", "timeseries", sql_text(f"""
            SELECT $__timeInterval(bucket) AS time,
                   round(100 * sum(succeeded) / sum(finished), 2) AS success_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time HAVING sum(finished) > 0 ORDER BY time"""),
            (12, 4, 12, 8), unit="percent", min_interval="5m",
            description="Share of finished runs that succeeded (stopped runs count as not succeeded)."),
        Panel(7, "Failure rate by workflow type and trigger", "barchart", sql_text(f"""
            SELECT workflow_type,
                   round(100 * sumIf(failed, trigger = 'manual')
                         / nullIf(sumIf(finished, trigger = 'manual'), 0), 2) AS manual,
                   round(100 * sumIf(failed, trigger = 'automatic')
                         / nullIf(sumIf(finished, trigger = 'automatic'), 0), 2) AS automatic,
                   round(100 * sumIf(failed, trigger = 'api')
                         / nullIf(sumIf(finished, trigger = 'api'), 0), 2) AS api,
                   round(100 * sumIf(failed, trigger = 'scheduled')
                         / nullIf(sumIf(finished, trigger = 'scheduled'), 0), 2) AS scheduled
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY workflow_type HAVING sum(finished) > 0 ORDER BY workflow_type"""),
            (0, 12, 12, 8), unit="percent",
            description="Failed share of finished runs per workflow type, one bar per trigger."),
        Panel(8, "Run duration p50 / p95", "timeseries", sql_text(f"""
            SELECT time, q[1] AS p50, q[2] AS p95
            FROM (
                SELECT $__timeInterval(bucket) AS time, quantilesTDigestMerge(0.5, 0.95)(duration_digest) AS q
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND {RUNS} AND finished > 0
                GROUP BY time
            )
            ORDER BY time"""),
            (12, 12, 12, 8), unit="ms", min_interval="5m",
            description="Run duration (start to finish) percentiles, merged from t-digests."),
        Panel(9, "Runs per day", "barchart", sql_text(f"""
            SELECT formatDateTime(toStartOfDay(bucket), '%Y-%m-%d') AS day,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY day ORDER BY day"""),
            (0, 20, 8, 8), stacked=True, unit="short"),
        Panel(10, "Runs per week", "barchart", sql_text(f"""
            SELECT formatDateTime(toStartOfWeek(bucket, 1), '%Y-%m-%d') AS week,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY week ORDER BY week"""),
            (8, 20, 8, 8), stacked=True, unit="short", description="Weeks start on Monday (UTC)."),
        Panel(11, "Runs per month", "barchart", sql_text(f"""
            SELECT formatDateTime(toStartOfMonth(bucket), '%Y-%m') AS month,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY month ORDER BY month"""),
            (16, 20, 8, 8), stacked=True, unit="short"),
        Panel(12, "Peak hours (runs finished per hour of day, UTC)", "heatmap", sql_text(f"""
            SELECT toStartOfDay(bucket) AS time,
                   {', '.join(f"sumIf(finished, toHour(bucket) = {h}) AS `{h:02d}`" for h in range(24))}
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time ORDER BY time"""),
            (0, 28, 24, 9), unit="short",
            description="One column per day, one row per hour of the day: when the engine is busiest."),
        Panel(13, "Workflows needing attention", "table", sql_text(attention.panel_sql(
            attention.grafana_dialect(is_in("account_id", "account"), is_in("workflow_id", "workflow"),
                                      open_runs=False))),
            (0, 37, 24, 10), links=(Link("workflow_id", "Drill into this workflow", WORKFLOW_LINK),),
            description="Ranked by score: failure rate against the workflow's own baseline (the 4 time ranges "
                        "before, at most 28 days), new error signatures, the latest version against the one "
                        "before, silent, a growing queue, late delays, replays failing again (stuck runs: `runlens "
                        "attention` and the report, which read open runs). Formula: README and "
                        "dashboards/attention.py; `runlens attention` shows the numbers and drill-in commands."),
    ),
)
