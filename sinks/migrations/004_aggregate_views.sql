-- The aggregate query surface: plain SELECT. Minute buckets; roll up with GROUP BY on
-- toStartOfHour/Day/Week/Month(bucket) over the *_state tables and -Merge the digests
-- (runlens stats does exactly that).

CREATE OR REPLACE VIEW {db}.run_stats AS
SELECT
    bucket, account_id, workflow_id, any(name) AS workflow_name, workflow_version, workflow_type, trigger,
    nullIf(site_id, '') AS site_id, nullIf(card_id, '') AS card_id,
    sum(fin) AS finished, sum(ok) AS succeeded, sum(bad) AS failed, sum(stop) AS stopped,
    if(finished = 0, NULL, round(succeeded / finished, 4)) AS success_rate,
    if(finished = 0, NULL, sum(dsum) / finished) AS duration_avg_ms,
    quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ddig) AS duration_q,
    if(finished = 0, NULL, duration_q[1]) AS duration_p50_ms,
    if(finished = 0, NULL, duration_q[2]) AS duration_p90_ms,
    if(finished = 0, NULL, duration_q[3]) AS duration_p95_ms,
    if(finished = 0, NULL, duration_q[4]) AS duration_p99_ms,
    sum(qn) AS queue_samples,
    quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(qdig) AS queue_q,
    if(queue_samples = 0, NULL, queue_q[1]) AS queue_wait_p50_ms,
    if(queue_samples = 0, NULL, queue_q[2]) AS queue_wait_p90_ms,
    if(queue_samples = 0, NULL, queue_q[3]) AS queue_wait_p95_ms,
    if(queue_samples = 0, NULL, queue_q[4]) AS queue_wait_p99_ms
FROM
(
    SELECT bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
           workflow_name AS name, finished AS fin, succeeded AS ok, failed AS bad, stopped AS stop,
           duration_sum_ms AS dsum, duration_digest AS ddig, queue_samples AS qn, queue_wait_digest AS qdig
    FROM {db}.run_stats_state
)
GROUP BY bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

CREATE OR REPLACE VIEW {db}.step_stats AS
SELECT
    *,
    if(workflow_step_time_ms = 0, NULL, round(duration_sum_ms / workflow_step_time_ms, 4)) AS share_of_run_time
FROM
(
    SELECT
        bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
        max(idx) AS step_index,
        sum(n) AS executions, sum(ok) AS succeeded, sum(bad) AS failed, sum(skip) AS skipped,
        sum(retry) AS retries,
        if(executions = 0, NULL, round(failed / executions, 4)) AS failure_rate,
        sum(dsum) AS duration_sum_ms,
        quantilesTDigestMerge(0.5, 0.9, 0.95, 0.99)(ddig) AS duration_q,
        duration_q[1] AS duration_p50_ms, duration_q[2] AS duration_p90_ms,
        duration_q[3] AS duration_p95_ms, duration_q[4] AS duration_p99_ms,
        sum(dl) AS delays, sum(dlate) AS delays_late,
        if(delays_late = 0, NULL, sum(lsum) / delays_late) AS lateness_avg_ms,
        max(lmax) AS lateness_max_ms,
        sum(duration_sum_ms) OVER (PARTITION BY bucket, account_id, workflow_id, workflow_version) AS workflow_step_time_ms
    FROM
    (
        SELECT bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
               step_index AS idx, executions AS n, succeeded AS ok, failed AS bad, skipped AS skip,
               retries AS retry, duration_sum_ms AS dsum, duration_digest AS ddig, delays AS dl,
               delays_late AS dlate, lateness_sum_ms AS lsum, lateness_max_ms AS lmax
        FROM {db}.step_stats_state
    )
    GROUP BY bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type
);

CREATE OR REPLACE VIEW {db}.queue_depth AS
SELECT
    bucket AS time, account_id,
    sum(pd) OVER w AS pending,
    sum(rd) OVER w AS running,
    q AS arrivals, s AS started, f AS completions
FROM
(
    SELECT account_id, bucket, sum(queued) AS q, sum(started) AS s, sum(finished) AS f,
           sum(pending_delta) AS pd, sum(running_delta) AS rd
    FROM {db}.queue_state
    GROUP BY account_id, bucket
)
WINDOW w AS (PARTITION BY account_id ORDER BY bucket ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

CREATE OR REPLACE VIEW {db}.alerts AS
SELECT
    alert_id, any(k) AS kind, account_id, any(subj) AS subject, any(subj_name) AS subject_name,
    if(countIf(st = 'resolved') > 0, 'resolved', 'firing') AS state,
    argMaxIf(sev, at, st = 'firing') AS severity,
    min(since) AS started_at,
    maxIf(resolved, st = 'resolved') AS resolved_at,
    argMaxIf(text, at, st = 'firing') AS summary,
    argMaxIf(figures, at, st = 'firing') AS numbers
FROM
(
    SELECT alert_id, account_id, kind AS k, subject AS subj, subject_name AS subj_name, state AS st,
           severity AS sev, started_at AS since, resolved_at AS resolved, summary AS text,
           numbers AS figures, emitted_at AS at
    FROM {db}.alert_events FINAL
)
GROUP BY account_id, alert_id;
