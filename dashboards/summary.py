"""The pipeline summary the demo prints: a handful of panels over the contract's views.

Each panel is plain SQL over ``runs``, ``steps`` and ``rejected_events`` in one database,
so the same definitions serve the terminal, the HTML report and Grafana.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    sql: str


SUMMARY_PANELS = (
    Panel("runs_by_status", "Runs by status", """
        SELECT status, count() AS runs, round(100 * runs / sum(runs) OVER (), 1) AS pct
        FROM runs GROUP BY status ORDER BY runs DESC"""),
    Panel("success_by_type", "Success rate by workflow type (finished runs)", """
        SELECT workflow_type,
               countIf(status IN ('success', 'failed', 'stopped')) AS finished,
               countIf(status = 'success') AS succeeded,
               countIf(status = 'failed') AS failed,
               round(100 * succeeded / nullIf(finished, 0), 1) AS success_pct
        FROM runs GROUP BY workflow_type ORDER BY workflow_type"""),
    Panel("durations", "Run duration and queue wait (finished runs, seconds)", """
        SELECT workflow_type,
               round(quantileExact(0.5)(duration_ms) / 1000, 2) AS p50_s,
               round(quantileExact(0.95)(duration_ms) / 1000, 2) AS p95_s,
               round(quantileExact(0.95)(queue_ms) / 1000, 2) AS queue_p95_s
        FROM runs WHERE duration_ms IS NOT NULL
        GROUP BY ROLLUP(workflow_type)
        ORDER BY workflow_type = '' , workflow_type"""),
    Panel("top_failing_steps", "Top failing steps", """
        SELECT any(r.workflow_name) AS workflow, s.step_name AS step, count() AS failures,
               topK(1)(s.error_code)[1] AS top_error
        FROM steps AS s
        INNER JOIN (SELECT account_id, run_id, workflow_name FROM runs) AS r
            ON r.account_id = s.account_id AND r.run_id = s.run_id
        WHERE s.status = 'failed'
        GROUP BY s.workflow_id, s.step_name ORDER BY failures DESC LIMIT 8"""),
    Panel("rejected", "Events rejected (dead-lettered)", """
        SELECT reason, count() AS events FROM rejected_events
        GROUP BY reason ORDER BY events DESC LIMIT 8"""),
)


def run_panels(client: Client, panels=SUMMARY_PANELS) -> list[tuple[Panel, list[str], list[tuple[Any, ...]]]]:
    """Run each panel's SQL; returns (panel, column names, rows)."""
    out = []
    for panel in panels:
        result = client.query(panel.sql)
        out.append((panel, list(result.column_names), [tuple(r) for r in result.result_rows]))
    return out
