"""The pipeline summary the demo prints: a handful of panels over the contract's views.

Each panel is plain SQL over the aggregate state (``run_stats_hourly``, ``queue_state``,
``run_notes``; see ``sinks/migrations/003`` and ``007``) and ``rejected_events`` in one
database, so its cost does not grow with the number of runs stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    sql: str


SUMMARY_PANELS = (
    # Finished runs by outcome (run_stats_hourly) plus the runs still pending / running (the
    # running sum of queue_state's transitions): no scan of every run.
    Panel("runs_by_status", "Runs by status", """
        SELECT status, runs, round(100 * runs / sum(runs) OVER (), 1) AS pct
        FROM (
            SELECT ['success', 'failed', 'stopped', 'running', 'pending'] AS statuses,
                   [f.ok, f.bad, f.stop, toUInt64(greatest(q.running, 0)), toUInt64(greatest(q.pending, 0))] AS counts
            FROM (SELECT sum(succeeded) AS ok, sum(failed) AS bad, sum(stopped) AS stop FROM run_stats_hourly) AS f,
                 (SELECT sum(running_delta) AS running, sum(pending_delta) AS pending FROM queue_state) AS q
        )
        ARRAY JOIN statuses AS status, counts AS runs
        WHERE runs > 0
        ORDER BY runs DESC"""),
    Panel("success_by_type", "Success rate by workflow type (finished runs)", """
        SELECT workflow_type,
               sum(run_stats_hourly.finished) AS finished,
               sum(run_stats_hourly.succeeded) AS succeeded,
               sum(run_stats_hourly.failed) AS failed,
               round(100 * succeeded / nullIf(finished, 0), 1) AS success_pct
        FROM run_stats_hourly GROUP BY workflow_type HAVING finished > 0 ORDER BY workflow_type"""),
    # Percentiles merged from the hourly t-digests (run_stats_hourly, rank error ~1-2 %); queue
    # wait of the runs that started.
    Panel("durations", "Run duration and queue wait (finished runs, seconds)", """
        SELECT workflow_type, round(d[1] / 1000, 2) AS p50_s, round(d[2] / 1000, 2) AS p95_s,
               round(w[1] / 1000, 2) AS queue_p95_s
        FROM (
            SELECT workflow_type, sum(finished) AS n,
                   quantilesTDigestMerge(0.5, 0.95)(duration_digest) AS d,
                   quantilesTDigestMerge(0.95)(queue_wait_digest) AS w
            FROM run_stats_hourly
            GROUP BY ROLLUP(workflow_type)
        )
        WHERE n > 0
        ORDER BY workflow_type = '' , workflow_type"""),
    # Failed step attempts from run_notes (failed finishes only).
    Panel("top_failing_steps", "Top failing steps", """
        SELECT any(workflow_name) AS workflow, step, sum(n) AS failures,
               arraySort(x -> (-x.1, x.2), groupArray((n, error_code)))[1].2 AS top_error
        FROM (
            SELECT workflow_id, assumeNotNull(step_name) AS step, error_code,
                   any(workflow_name) AS workflow_name, count() AS n
            FROM run_notes FINAL WHERE scope = 'step'
            GROUP BY workflow_id, step, error_code
        )
        GROUP BY workflow_id, step ORDER BY failures DESC, workflow_id, step LIMIT 8"""),
    Panel("rejected", "Events rejected (dead-lettered)", """
        SELECT reason, count() AS events FROM rejected_events
        GROUP BY reason ORDER BY events DESC LIMIT 8"""),
)


def run_panels(client: Client, panels: Iterable[Panel] = SUMMARY_PANELS,
               ) -> list[tuple[Panel, list[str], list[tuple[Any, ...]]]]:
    """Run each panel's SQL; returns (panel, column names, rows)."""
    out = []
    for panel in panels:
        result = client.query(panel.sql)
        out.append((panel, list(result.column_names), [tuple(r) for r in result.result_rows]))
    return out
