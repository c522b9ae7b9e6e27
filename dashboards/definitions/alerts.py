"""The Grafana-managed alert rules and how their notifications are grouped and sent."""

from __future__ import annotations

from dashboards.definitions.filters import sql_text
from dashboards.definitions.model import AlertRule

ALERT_RULES = (
    AlertRule(
        uid="runlens-failure-spike",
        title="Failure spike",
        sql=sql_text("""
            SELECT account_id AS account, workflow_id AS workflow, anyLast(workflow_name) AS workflow_name,
                   round(100 * sum(failed) / sum(finished), 2) AS failure_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket)
            GROUP BY account, workflow
            HAVING sum(finished) >= 20"""),
        window_s=900, op="gt", threshold=20, pending="5m", severity="critical",
        summary="{{ $labels.workflow_name }} ({{ $labels.account }}): {{ $values.A.Value }}% of runs failed "
                "in the last 15 minutes",
        description="More than 20% of the workflow's finished runs failed over 15 minutes, with at least 20 "
                    "finished runs, for 5 minutes in a row.",
        runbook="Open Failures, filter on the workflow: top error code and failing step tell whether it is an "
                "integration outage (replay once it recovers) or a broken version (roll back, then replay).",
        dashboard_uid="runlens-failures", panel_id=4,
    ),
    AlertRule(
        uid="runlens-stuck-runs",
        title="Stuck runs",
        sql=sql_text("""
            SELECT account_id AS account, workflow_id AS workflow, count() AS stuck_runs
            FROM runs
            WHERE status = 'running' AND started_at < $__toTime - INTERVAL 1 HOUR
              AND $__timeFilter(started_at)
            GROUP BY account, workflow"""),
        window_s=86400, op="gt", threshold=0, pending="10m", severity="warning",
        summary="{{ $values.A.Value }} run(s) of {{ $labels.workflow }} ({{ $labels.account }}) have been "
                "running for more than an hour",
        description="Runs started in the last day that have not finished an hour after they started.",
        runbook="Check the workflow's delay and webhook steps in Workflow drill-down; stop the stuck runs in "
                "the engine and replay them if the step they hang on was fixed.",
        dashboard_uid="runlens-workflow", panel_id=2,
    ),
    AlertRule(
        uid="runlens-queue-growing",
        title="Queue growing",
        sql=sql_text("""
            SELECT account_id AS account,
                   if(argMax(pending, time) > argMin(pending, time), argMax(pending, time), 0) AS growing_pending
            FROM queue_depth
            WHERE $__timeFilter(time)
            GROUP BY account"""),
        window_s=600, op="gt", threshold=50, pending="5m", severity="warning",
        summary="{{ $labels.account }}: {{ $values.A.Value }} runs pending and the queue is still growing",
        description="The account's pending runs grew over the last 10 minutes and more than 50 are waiting.",
        runbook="Open Queue and capacity: if completions dropped, the engine lost workers (scale them up); if "
                "arrivals jumped, a scheduled batch or an import is running (let it drain or raise the limit).",
        dashboard_uid="runlens-queue", panel_id=1,
    ),
    AlertRule(
        uid="runlens-silent-workflow",
        title="Silent workflow",
        sql=sql_text("""
            SELECT account_id AS account, workflow_id AS workflow, anyLast(workflow_name) AS workflow_name,
                   round(dateDiff('second', max(bucket), $__toTime)
                         / greatest(3 * dateDiff('second', min(bucket), max(bucket)) / sum(finished), 900), 2)
                       AS silence_ratio
            FROM run_stats_state
            WHERE $__timeFilter(bucket)
            GROUP BY account, workflow
            HAVING sum(finished) >= 20"""),
        window_s=86400, op="gt", threshold=1, pending="5m", severity="warning",
        summary="{{ $labels.workflow_name }} ({{ $labels.account }}) stopped producing runs: silent for "
                "{{ $values.A.Value }} x its allowed gap",
        description="A workflow with at least 20 finished runs in the last day has finished none for longer than "
                    "max(3 x its average gap between runs, 15 minutes) (the stream's silent_workflow twin, on the "
                    "minute aggregates).",
        runbook="Check the workflow's trigger (schedule disabled, webhook source down, a site unpublished) and "
                "whether the engine still queues its runs: Workflow drill-down shows when the last run came.",
        dashboard_uid="runlens-workflow", panel_id=1,
    ),
    AlertRule(
        uid="runlens-version-regression",
        title="Version regression",
        sql=sql_text("""
            SELECT account, workflow, workflow_name,
                   round((tupleElement(newest, 3) / tupleElement(newest, 2))
                         / greatest(tupleElement(previous, 3) / tupleElement(previous, 2), 0.02), 2)
                       AS failure_ratio
            FROM (
                SELECT account, workflow, anyLast(name) AS workflow_name, arraySort(groupArray((v, n, f))) AS vs,
                       vs[-1] AS newest, vs[-2] AS previous
                FROM (
                    SELECT account_id AS account, workflow_id AS workflow, workflow_version AS v,
                           anyLast(workflow_name) AS name, sum(finished) AS n, sum(failed) AS f
                    FROM run_stats_hourly
                    WHERE $__timeFilter(bucket)
                    GROUP BY account, workflow, v
                )
                GROUP BY account, workflow
                HAVING length(vs) >= 2
            )
            WHERE tupleElement(newest, 2) >= 20 AND tupleElement(previous, 2) >= 20
              AND tupleElement(newest, 3) >= 5"""),
        window_s=7 * 86400, op="gt", threshold=2, pending="15m", severity="warning",
        summary="{{ $labels.workflow_name }} ({{ $labels.account }}): its newest version fails "
                "{{ $values.A.Value }} x as often as the previous one",
        description="Over the last 7 days, the workflow's newest version (>= 20 finished runs, >= 5 failures) has a "
                    "failure rate more than twice the previous version's (floored at 2%) (the stream's "
                    "version_regression twin; the stream also judges p95 duration and significance).",
        runbook="Open Failures filtered on the workflow and compare the versions' error codes and failing steps; "
                "roll back to the previous version, then replay the failed runs.",
        dashboard_uid="runlens-failures", panel_id=4,
    ),
    AlertRule(
        uid="runlens-new-error-signature",
        title="New error signature",
        sql=sql_text("""
            SELECT account, workflow, toFloat64(countIf(first_seen >= $__fromTime)) AS new_signatures
            FROM (
                SELECT account_id AS account, workflow_id AS workflow, error_code, error_class,
                       min(finished_at) AS first_seen
                FROM runs
                WHERE status = 'failed' AND finished_at >= $__toTime - INTERVAL 30 DAY
                  AND finished_at <= $__toTime
                GROUP BY account, workflow, error_code, error_class
            )
            GROUP BY account, workflow"""),
        window_s=3600, op="gt", threshold=0, pending="0m", severity="warning",
        summary="{{ $labels.workflow }} ({{ $labels.account }}) failed with {{ $values.A.Value }} error "
                "signature(s) not seen in the 30 days before",
        description="An (error code, error class) the workflow has not failed with in the previous 30 days first "
                    "appeared in the last hour (the stream's new_error_signature twin).",
        runbook="Open Failures filtered on the workflow and the new code: a new code after a release is a broken "
                "version (roll back); a new external error is an integration change (fix credentials or limits, "
                "then replay).",
        dashboard_uid="runlens-failures", panel_id=4,
    ),
    AlertRule(
        uid="runlens-run-deadline",
        title="Runs past their deadline",
        sql=sql_text("""
            SELECT r.account_id AS account, r.workflow_id AS workflow, toFloat64(count()) AS overdue_runs
            FROM runs AS r
            INNER JOIN (
                SELECT account_id, workflow_id,
                       quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(duration_digest)[4] AS p99_ms
                FROM run_stats_hourly
                WHERE bucket >= $__toTime - INTERVAL 7 DAY
                GROUP BY account_id, workflow_id
            ) AS p ON r.account_id = p.account_id AND r.workflow_id = p.workflow_id
            WHERE r.status = 'running' AND $__timeFilter(r.started_at)
              AND r.started_at < $__toTime - toIntervalMillisecond(toInt64(greatest(1.5 * p.p99_ms, 300000)))
            GROUP BY account, workflow"""),
        window_s=86400, op="gt", threshold=0, pending="5m", severity="warning",
        summary="{{ $values.A.Value }} run(s) of {{ $labels.workflow }} ({{ $labels.account }}) are still running "
                "past 1.5 x the workflow's p99 duration",
        description="Runs started in the last day still running after max(1.5 x the workflow's p99 duration over "
                    "7 days, 5 minutes) (the stream's run_deadline twin; the stream also honours "
                    "RUNLENS_ALERT_DEADLINES).",
        runbook="Check the run's current step in Workflow drill-down (a slow integration or a long delay); stop "
                "and replay it if it hangs, or set a deadline for the workflow if such runs are expected.",
        dashboard_uid="runlens-workflow", panel_id=2,
    ),
    AlertRule(
        uid="runlens-dead-letter-rate",
        title="Dead-letter rate",
        sql=sql_text("""
            SELECT round(100 * dead / (stored + dead), 3) AS dead_letter_pct
            FROM (SELECT count() AS stored FROM events WHERE $__timeFilter(ingested_at)) AS e,
                 (SELECT count() AS dead FROM dead_letters WHERE $__timeFilter(received_at)) AS d
            WHERE stored + dead >= 100"""),
        window_s=600, op="gt", threshold=5, pending="5m", severity="warning",
        summary="{{ $values.A.Value }}% of consumed records went to the dead-letter topic in the last 10 minutes",
        description="More than 5% of at least 100 consumed records were invalid.",
        runbook="Open Pipeline health > Dead letters by reason: a new reason after a deploy of the engine means "
                "a contract break (fix the emitter); then re-publish the dead letters' raw lines.",
        dashboard_uid="runlens-pipeline", panel_id=3,
    ),
    AlertRule(
        uid="runlens-pipeline-lag",
        title="Pipeline lag",
        sql=sql_text("""
            SELECT worker, max(value) AS lag
            FROM pipeline_metrics
            WHERE metric = 'consumer_lag' AND $__timeFilter(time)
            GROUP BY worker"""),
        window_s=300, op="gt", threshold=10000, pending="5m", severity="critical",
        summary="Worker {{ $labels.worker }} is {{ $values.A.Value }} records behind",
        description="A worker reported a consumer lag above 10,000 records for 5 minutes.",
        runbook="Check the worker logs and ClickHouse health (a failing warehouse makes the worker retry and "
                "stop consuming); add workers up to the number of partitions if it is only load.",
        dashboard_uid="runlens-pipeline", panel_id=2,
    ),
    AlertRule(
        uid="runlens-no-data",
        title="No events ingested",
        sql=sql_text("""
            SELECT count() AS events_ingested
            FROM events
            WHERE $__timeFilter(ingested_at)"""),
        window_s=900, op="lt", threshold=1, pending="5m", severity="critical",
        summary="No events reached the warehouse in the last 15 minutes",
        description="The events table received no rows for 15 minutes: producers, Kafka or the worker stopped.",
        runbook="Check that the workers run and consume (consumer group lag), that Kafka is healthy and that the "
                "engine still emits; then look at Pipeline health for when it stopped.",
        dashboard_uid="runlens-pipeline", panel_id=1,
        no_data_state="Alerting", exec_err_state="Alerting",
    ),
    AlertRule(
        uid="runlens-aggregate-drift",
        title="Aggregates drift from the raw events",
        sql=sql_text("""
            SELECT account, toFloat64(sum(abs(toInt64(aggregated) - toInt64(raw)))) AS drift_runs
            FROM (
                SELECT account_id AS account, bucket, sum(raw) AS raw, sum(aggregated) AS aggregated
                FROM (
                    SELECT account_id, toStartOfMinute(ts) AS bucket, uniqExact(event_id) AS raw,
                           toUInt64(0) AS aggregated
                    FROM events
                    WHERE type = 'run.finished' AND $__timeFilter(toStartOfMinute(ts))
                    GROUP BY account_id, bucket
                    UNION ALL
                    SELECT account_id, bucket, toUInt64(0), sum(finished)
                    FROM run_stats_state
                    WHERE $__timeFilter(bucket)
                    GROUP BY account_id, bucket
                )
                GROUP BY account, bucket
            )
            GROUP BY account"""),
        window_s=3600, op="gt", threshold=0, pending="15m", severity="warning",
        summary="Finished-run counts of {{ $labels.account }} differ from a recount of the raw events by "
                "{{ $values.A.Value }} over the last hour",
        description="The continuous reconciliation: per account and minute, finished runs in run_stats "
                    "against distinct run.finished events in the raw table (what `runlens reconcile` checks "
                    "against the runs view). Anything but 0 for 15 minutes means an aggregate lost or "
                    "double-counted events.",
        runbook="Run `runlens reconcile --since 2h` to list the buckets; look for worker restarts or warehouse "
                "errors at that time in Pipeline health and the worker log. The raw events are intact: the "
                "minutes can be rebuilt from them.",
        dashboard_uid="runlens-pipeline", panel_id=1,
    ),
)

ALERT_GROUP = "runlens"
ALERT_INTERVAL = "1m"
CONTACT_POINT = "runlens-webhook"
WEBHOOK_URL_ENV = "RUNLENS_GRAFANA_WEBHOOK_URL"
GROUP_BY = ("alertname", "account", "workflow")
