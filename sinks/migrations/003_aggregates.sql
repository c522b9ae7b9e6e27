-- Real-time aggregates. Each is an AggregatingMergeTree fed by materialized views from the
-- rows the worker marks new (is_new = 1): every event counts once however often it is
-- delivered. Late and out-of-order events land in the bucket of their own event time, so a
-- bucket is corrected whenever its data arrives. Percentiles are t-digest states, merged
-- across minutes and partitions, never averaged.

CREATE TABLE IF NOT EXISTS {db}.run_stats_state
(
    bucket            DateTime('UTC'),
    account_id        LowCardinality(String),
    workflow_id       LowCardinality(String),
    workflow_version  UInt32,
    workflow_type     LowCardinality(String),
    trigger           LowCardinality(String),
    site_id           String,
    card_id           String,
    workflow_name     SimpleAggregateFunction(anyLast, String),
    finished          SimpleAggregateFunction(sum, UInt64),
    succeeded         SimpleAggregateFunction(sum, UInt64),
    failed            SimpleAggregateFunction(sum, UInt64),
    stopped           SimpleAggregateFunction(sum, UInt64),
    duration_sum_ms   SimpleAggregateFunction(sum, Float64),
    duration_digest   AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    queue_samples     SimpleAggregateFunction(sum, UInt64),
    queue_wait_sum_ms SimpleAggregateFunction(sum, Float64),
    queue_wait_digest AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Finished runs, in the minute they finished.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_stats_finished_mv TO {db}.run_stats_state AS
SELECT
    toStartOfMinute(ts) AS bucket, account_id, workflow_id, workflow_version, workflow_type, trigger,
    ifNull(site_id, '') AS site_id, ifNull(card_id, '') AS card_id,
    anyLast(workflow_name) AS workflow_name,
    count() AS finished,
    countIf(status = 'success') AS succeeded,
    countIf(status = 'failed') AS failed,
    countIf(status = 'stopped') AS stopped,
    sum(toFloat64(dateDiff('millisecond', assumeNotNull(started_at), ts))) AS duration_sum_ms,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(toFloat64(dateDiff('millisecond', assumeNotNull(started_at), ts))) AS duration_digest,
    toUInt64(0) AS queue_samples,
    toFloat64(0) AS queue_wait_sum_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(toFloat64(0), 0) AS queue_wait_digest
FROM {db}.events
WHERE is_new = 1 AND type = 'run.finished'
GROUP BY bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

-- Queue waits, in the minute the run started (left the queue).
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_stats_queue_mv TO {db}.run_stats_state AS
SELECT
    toStartOfMinute(assumeNotNull(queue_wait_at)) AS bucket, account_id, workflow_id, workflow_version,
    workflow_type, trigger, ifNull(site_id, '') AS site_id, ifNull(card_id, '') AS card_id,
    anyLast(workflow_name) AS workflow_name,
    toUInt64(0) AS finished, toUInt64(0) AS succeeded, toUInt64(0) AS failed, toUInt64(0) AS stopped,
    toFloat64(0) AS duration_sum_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(toFloat64(0), 0) AS duration_digest,
    count() AS queue_samples,
    sum(toFloat64(assumeNotNull(queue_wait_ms))) AS queue_wait_sum_ms,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(toFloat64(assumeNotNull(queue_wait_ms))) AS queue_wait_digest
FROM {db}.events
WHERE is_new = 1 AND queue_wait_ms IS NOT NULL
GROUP BY bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

CREATE TABLE IF NOT EXISTS {db}.step_stats_state
(
    bucket             DateTime('UTC'),
    account_id         LowCardinality(String),
    workflow_id        LowCardinality(String),
    workflow_version   UInt32,
    step_id            String,
    step_name          LowCardinality(String),
    step_type          LowCardinality(String),
    step_index         SimpleAggregateFunction(max, UInt16),
    executions         SimpleAggregateFunction(sum, UInt64),
    succeeded          SimpleAggregateFunction(sum, UInt64),
    failed             SimpleAggregateFunction(sum, UInt64),
    skipped            SimpleAggregateFunction(sum, UInt64),
    retries            SimpleAggregateFunction(sum, UInt64),
    duration_sum_ms    SimpleAggregateFunction(sum, Float64),
    duration_digest    AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    delays             SimpleAggregateFunction(sum, UInt64),
    delays_late        SimpleAggregateFunction(sum, UInt64),
    lateness_sum_ms    SimpleAggregateFunction(sum, Float64),
    lateness_max_ms    SimpleAggregateFunction(max, Float64)
)
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket, workflow_id, workflow_version, step_id, step_name, step_type)
SETTINGS non_replicated_deduplication_window = 1000;

-- Finished step attempts, in the minute they finished. A delay step is late when it resumed
-- more than one second after its scheduled time.
CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.step_stats_mv TO {db}.step_stats_state AS
SELECT
    toStartOfMinute(ts) AS bucket, account_id, workflow_id, workflow_version,
    assumeNotNull(step_id) AS step_id, assumeNotNull(step_name) AS step_name,
    assumeNotNull(step_type) AS step_type,
    max(assumeNotNull(step_index)) AS step_index,
    count() AS executions,
    countIf(status = 'success') AS succeeded,
    countIf(status = 'failed') AS failed,
    countIf(status = 'skipped') AS skipped,
    countIf(attempt > 1) AS retries,
    sum(toFloat64(dateDiff('millisecond', assumeNotNull(started_at), ts))) AS duration_sum_ms,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(toFloat64(dateDiff('millisecond', assumeNotNull(started_at), ts))) AS duration_digest,
    countIf(resumed_at IS NOT NULL AND scheduled_resume_at IS NOT NULL) AS delays,
    countIf(dateDiff('millisecond', scheduled_resume_at, resumed_at) > 1000) AS delays_late,
    sum(toFloat64(greatest(0, ifNull(dateDiff('millisecond', scheduled_resume_at, resumed_at), 0)))) AS lateness_sum_ms,
    max(toFloat64(greatest(0, ifNull(dateDiff('millisecond', scheduled_resume_at, resumed_at), 0)))) AS lateness_max_ms
FROM {db}.events
WHERE is_new = 1 AND type = 'step.finished'
GROUP BY bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type;

-- Run lifecycle transitions per account in 10-second buckets; depth is their running sum.
CREATE TABLE IF NOT EXISTS {db}.queue_state
(
    bucket        DateTime('UTC'),
    account_id    LowCardinality(String),
    queued        SimpleAggregateFunction(sum, UInt64),
    started       SimpleAggregateFunction(sum, UInt64),
    finished      SimpleAggregateFunction(sum, UInt64),
    pending_delta SimpleAggregateFunction(sum, Int64),
    running_delta SimpleAggregateFunction(sum, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.queue_state_mv TO {db}.queue_state AS
SELECT
    toStartOfInterval(ts, INTERVAL 10 SECOND) AS bucket, account_id,
    countIf(type = 'run.queued') AS queued,
    countIf(type = 'run.started') AS started,
    countIf(type = 'run.finished') AS finished,
    toInt64(queued) - toInt64(started) AS pending_delta,
    toInt64(started) - toInt64(finished) AS running_delta
FROM {db}.events
WHERE is_new = 1 AND type IN ('run.queued', 'run.started', 'run.finished')
GROUP BY bucket, account_id;

-- Alerts the stream's detectors raised: one row per state change (firing, resolved).
CREATE TABLE IF NOT EXISTS {db}.alert_events
(
    alert_id      String,
    kind          LowCardinality(String),
    account_id    LowCardinality(String),
    subject       String,
    subject_name  String,
    state         LowCardinality(String),
    severity      LowCardinality(String),
    started_at    DateTime64(3, 'UTC'),
    resolved_at   Nullable(DateTime64(3, 'UTC')),
    summary       String,
    numbers       Map(String, Float64),
    emitted_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(emitted_at)
ORDER BY (account_id, alert_id, state);
