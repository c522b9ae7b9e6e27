"""Dashboard 5: pipeline health (throughput, lag, dead letters, freshness, alerts)."""

from __future__ import annotations

from dashboards.definitions.filters import ACCOUNT, sql_text
from dashboards.definitions.model import Dashboard, Panel

PIPELINE = Dashboard(
    uid="runlens-pipeline",
    title="runlens / Pipeline health",
    description="Is the pipeline keeping up: throughput, lag, dead letters, freshness, alerts.",
    time_from="now-1h",
    refresh="30s",
    panels=(
        Panel(1, "Events in / out per second", "timeseries", sql_text("""
            SELECT t AS time,
                   sum(value) / $__interval_s AS events_in,
                   sumIf(value, metric = 'batch_events_stored') / $__interval_s AS events_stored
            FROM (
                SELECT $__timeInterval(time) AS t, metric, value
                FROM pipeline_metrics
                WHERE metric IN ('batch_events_stored', 'batch_dead_letters_stored') AND $__timeFilter(time)
            )
            GROUP BY t ORDER BY t"""),
            (0, 0, 12, 8), unit="suffix: events/s", min_interval="10s",
            description="In: records the worker consumed (stored events and dead letters); stored: rows "
                        "written to the events table, by the time their insert was acknowledged. From the "
                        "workers' per-batch figures (batch_events_stored, batch_dead_letters_stored), over "
                        "every account."),
        Panel(2, "Consumer lag", "timeseries", sql_text("""
            SELECT $__timeInterval(time) AS t, worker, max(value) AS lag
            FROM pipeline_metrics
            WHERE metric = 'consumer_lag' AND $__timeFilter(time)
            GROUP BY t, worker ORDER BY t, worker"""),
            (12, 0, 12, 8), unit="short", min_interval="10s",
            description="Records behind the head of the events topic, as each worker reports it."),
        Panel(3, "Dead-letter rate", "timeseries", sql_text("""
            SELECT t AS time,
                   round(100 * sumIf(value, metric = 'batch_dead_letters_stored') / sum(value), 3)
                       AS dead_letter_pct
            FROM (
                SELECT $__timeInterval(time) AS t, metric, value
                FROM pipeline_metrics
                WHERE metric IN ('batch_events_stored', 'batch_dead_letters_stored') AND $__timeFilter(time)
            )
            GROUP BY t HAVING sum(value) > 0 ORDER BY t"""),
            (0, 8, 12, 8), unit="percent", min_interval="1m",
            description="Share of consumed records that were invalid and went to the dead-letter topic "
                        "(the workers' per-batch figures)."),
        Panel(4, "Event-to-queryable latency (live events)", "timeseries", sql_text("""
            SELECT t AS time,
                   quantileExactWeighted(0.5)(p50, toUInt64(n)) AS p50,
                   quantileExactWeighted(0.95)(p95, toUInt64(n)) AS p95,
                   max(worst) AS max
            FROM (
                SELECT $__timeInterval(time) AS t, worker, time AS acked_at,
                       anyIf(value, metric = 'batch_live_events') AS n,
                       anyIf(value, metric = 'batch_latency_p50_ms') AS p50,
                       anyIf(value, metric = 'batch_latency_p95_ms') AS p95,
                       anyIf(value, metric = 'batch_latency_max_ms') AS worst
                FROM pipeline_metrics
                WHERE metric IN ('batch_live_events', 'batch_latency_p50_ms', 'batch_latency_p95_ms',
                                 'batch_latency_max_ms')
                  AND $__timeFilter(time)
                GROUP BY t, worker, acked_at
            )
            GROUP BY t ORDER BY t"""),
            (12, 8, 12, 8), unit="ms", min_interval="10s",
            description="From the event's own time to the moment its insert was acknowledged (queryable), "
                        "as the workers measure it per batch. Only events less than an hour old on arrival "
                        "count: a backfill's age is not latency. p50/p95: the batches' percentiles weighted "
                        "by their live events; max: exact. Over every account."),
        Panel(5, "Dead letters by reason", "table", sql_text("""
            SELECT splitByString(': ', reason)[1] AS reason, count() AS records,
                   max(received_at) AS last_seen, any(source) AS example_source
            FROM rejected_events
            WHERE $__timeFilter(received_at)
            GROUP BY reason ORDER BY records DESC LIMIT 20"""),
            (0, 16, 12, 8)),
        Panel(6, "Alerts raised", "timeseries", sql_text(f"""
            SELECT $__timeInterval(started_at) AS time, kind, count() AS alerts
            FROM alerts
            WHERE $__timeFilter(started_at) AND {ACCOUNT}
            GROUP BY time, kind ORDER BY time, kind"""),
            (12, 16, 12, 8), unit="short", min_interval="1m", bars=True, stacked=True,
            description="Alerts the stream's detectors raised (failure spikes, stuck runs, growing queues)."),
        Panel(7, "Alert timeline", "table", sql_text(f"""
            SELECT started_at, resolved_at, state, severity, kind, account_id AS account,
                   subject_name AS subject, summary
            FROM alerts
            WHERE (started_at <= $__toTime AND (resolved_at IS NULL OR resolved_at >= $__fromTime))
              AND {ACCOUNT}
            ORDER BY started_at DESC LIMIT 200"""),
            (0, 24, 24, 8), description="Every alert active at some point in the time range, newest first."),
    ),
)
