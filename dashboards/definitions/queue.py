"""Dashboard 4: queue depth, wait, throughput, utilisation and backlog drain."""

from __future__ import annotations

from dashboards.definitions.filters import ACCOUNT, PER_MINUTE, RUNS, sql_text
from dashboards.definitions.model import Dashboard, Panel

QUEUE = Dashboard(
    uid="runlens-queue",
    title="runlens / Queue and capacity",
    description="Queue depth, wait, throughput, utilisation and how long a backlog takes to drain.",
    panels=(
        Panel(1, "Pending and running runs", "timeseries", sql_text(f"""
            SELECT $__timeInterval(time) AS t, account_id,
                   max(pending) AS pending, max(running) AS running
            FROM queue_depth
            WHERE $__timeFilter(time) AND {ACCOUNT}
            GROUP BY t, account_id ORDER BY t, account_id"""),
            (0, 0, 12, 8), unit="short",
            description="Peak depth per interval: runs queued and not started, runs started and not finished."),
        Panel(2, "Queue wait p50 / p95", "timeseries", sql_text(f"""
            SELECT time, q[1] AS p50, q[2] AS p95
            FROM (
                SELECT $__timeInterval(bucket) AS time, quantilesTDigestMerge(0.5, 0.95)(queue_wait_digest) AS q
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND queue_samples > 0 AND {RUNS}
                GROUP BY time
            )
            ORDER BY time"""),
            (12, 0, 12, 8), unit="ms", min_interval="5m",
            description="Time from queued to started, in the minute the run started."),
        Panel(3, "Arrivals and completions per minute", "timeseries", sql_text(f"""
            SELECT $__timeInterval(bucket) AS time, account_id,
                   sum(queued) / {PER_MINUTE} AS arrivals,
                   sum(finished) / {PER_MINUTE} AS completions
            FROM queue_state
            WHERE $__timeFilter(bucket) AND {ACCOUNT}
            GROUP BY time, account_id ORDER BY time, account_id"""),
            (0, 8, 12, 8), unit="suffix: runs/min", min_interval="1m"),
        Panel(4, "Utilisation (running vs. peak concurrency)", "timeseries", sql_text(f"""
            SELECT t AS time, account_id,
                   round(100 * avg_running / nullIf(max(peak) OVER (PARTITION BY account_id), 0), 1) AS utilisation
            FROM (
                SELECT $__timeInterval(time) AS t, account_id, avg(running) AS avg_running, max(running) AS peak
                FROM queue_depth
                WHERE $__timeFilter(time) AND {ACCOUNT}
                GROUP BY t, account_id
            )
            ORDER BY time, account_id"""),
            (12, 8, 12, 8), unit="percent", min_interval="1m",
            description="Average running runs against the most that ran at once in the time range "
                        "(the observed capacity)."),
        Panel(5, "Backlog and drain ETA", "table", sql_text(f"""
            SELECT account_id AS account,
                   argMax(pending, time) AS pending_now,
                   argMax(running, time) AS running_now,
                   round(sumIf(arrivals, time > $__toTime - INTERVAL 15 MINUTE) / 15, 2) AS arrivals_per_min,
                   round(sumIf(completions, time > $__toTime - INTERVAL 15 MINUTE) / 15, 2) AS completions_per_min,
                   if(pending_now = 0, 0,
                      if(completions_per_min > arrivals_per_min,
                         round(pending_now / (completions_per_min - arrivals_per_min), 1), NULL)) AS eta_minutes
            FROM queue_depth
            WHERE $__timeFilter(time) AND {ACCOUNT}
            GROUP BY account ORDER BY pending_now DESC, account"""),
            (0, 16, 24, 7),
            description="Rates over the last 15 minutes of the range; ETA to drain the pending runs at the "
                        "net rate (empty while arrivals keep up with completions)."),
    ),
)
