"""Dashboard 3: what fails, where, why, and whether replays fixed it."""

from __future__ import annotations

from dashboards.definitions.filters import ACCOUNT, RUNS, sql_text
from dashboards.definitions.model import Dashboard, Link, Panel

WORKFLOW_LINK = ("/d/runlens-workflow?var-account=${__data.fields.account:percentencode}"
                 "&var-workflow=${__data.fields.workflow_id:percentencode}&${__url_time_range}")

FAILURES = Dashboard(
    uid="runlens-failures",
    title="runlens / Failures",
    description="What fails, where, why, and whether replays fixed it.",
    panels=(
        Panel(1, "Top error codes", "barchart", sql_text(f"""
            SELECT error_code, count() AS failed_runs
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            GROUP BY error_code ORDER BY failed_runs DESC, error_code LIMIT 10"""),
            (0, 0, 12, 8), unit="short", horizontal=True),
        Panel(2, "Error classes", "piechart", sql_text(f"""
            SELECT ifNull(error_class, 'unknown') AS error_class, count() AS failed_runs
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            GROUP BY error_class ORDER BY failed_runs DESC, error_class"""),
            (12, 0, 12, 8), unit="short"),
        Panel(3, "Failing steps", "table", sql_text(f"""
            SELECT any(workflow_name) AS workflow, step, any(step_type) AS type,
                   sum(n) AS failures, uniqExactMerge(run_ids) AS runs, sum(retried) AS on_retry,
                   arraySort(x -> (-x.1, x.2), groupArray((n, error_code)))[1].2 AS top_error,
                   max(last) AS last_failure
            FROM (
                SELECT workflow_id, assumeNotNull(step_name) AS step, error_code,
                       any(workflow_name) AS workflow_name, any(step_type) AS step_type, count() AS n,
                       uniqExactState(account_id, run_id) AS run_ids, countIf(attempt > 1) AS retried,
                       max(ts) AS last
                FROM run_notes FINAL
                WHERE scope = 'step' AND $__timeFilter(ts) AND {RUNS}
                GROUP BY workflow_id, step, error_code
            )
            GROUP BY workflow_id, step ORDER BY failures DESC, workflow_id, step LIMIT 20"""),
            (0, 8, 12, 8),
            description="Failed step attempts (retries included), the runs they failed in, and each "
                        "step's most frequent error code."),
        Panel(4, "Failure rate by workflow type", "timeseries", sql_text(f"""
            SELECT $__timeInterval(bucket) AS time, workflow_type,
                   round(100 * sum(failed) / sum(finished), 2) AS failure_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time, workflow_type HAVING sum(finished) > 0
            ORDER BY time, workflow_type"""),
            (12, 8, 12, 8), unit="percent", min_interval="15m"),
        Panel(5, "Replay outcomes", "barchart", sql_text(f"""
            SELECT ifNull(replay_mode, 'unknown') AS replay_mode,
                   countIf(status = 'success') AS success, countIf(status = 'failed') AS failed,
                   countIf(status = 'stopped') AS stopped,
                   countIf(status IN ('pending', 'running')) AS in_progress
            FROM (
                SELECT account_id, run_id, argMax(replay_mode, ts) AS replay_mode,
                       if(countIf(step_id = 'run.finished') > 0, argMaxIf(status, ts, step_id = 'run.finished'),
                          if(countIf(step_id = 'run.started') > 0, 'running', 'pending')) AS status,
                       countIf(step_id = 'run.queued') > 0 AS queued, minIf(ts, step_id = 'run.queued') AS queued_at,
                       argMax(workflow_id, ts) AS workflow_id, argMax(workflow_version, ts) AS workflow_version,
                       argMax(workflow_type, ts) AS workflow_type, argMax(trigger, ts) AS trigger,
                       argMax(site_id, ts) AS site_id, argMax(card_id, ts) AS card_id
                FROM run_notes FINAL
                WHERE scope = 'replay' AND {ACCOUNT}
                GROUP BY account_id, run_id
            )
            WHERE queued AND $__timeFilter(queued_at) AND {RUNS}
            GROUP BY replay_mode ORDER BY replay_mode"""),
            (0, 16, 8, 8), stacked=True, unit="short",
            description="Runs that replay a failed run (exact or modified), by their outcome."),
        Panel(6, "Recent failed runs", "table", sql_text(f"""
            SELECT ts AS finished_at, account_id AS account, workflow_name AS workflow, workflow_id,
                   workflow_version AS version, run_id, error_code, error_class, error_message
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            ORDER BY finished_at DESC, account, run_id LIMIT 50"""),
            (8, 16, 16, 8),
            links=(Link("workflow", "Drill into this workflow", WORKFLOW_LINK),),
            description="Newest first; click a workflow to drill into it."),
    ),
)
