-- Pre-aggregated state for the panels that used to scan every run or step (`runs` / `steps`
-- views, a GROUP BY over all of run_state / step_state): their cost grew with the whole history.
-- Everything here is fed by a materialized view that sees only a small share of the events
-- (failed finishes, replay runs), is folded into an existing view (the duration histogram), or
-- rolls up the minute aggregates as they are inserted (hourly run / step and daily step statistics: MVs on the
-- minute tables, which see a few hundred rows per insert, not the events), so ingest pays
-- little. Like 003, the new MV targets deduplicate a retried insert block
-- (non_replicated_deduplication_window) and count rows the worker marks new (is_new = 1).
-- Also: queue_depth is redefined over queue_state FINAL (same rows, cheaper).
--
-- Each backfill below copies what an existing database already holds; it runs once, when the
-- migration is applied (the worker applies migrations before it consumes), and is guarded so
-- that a re-run after a crash between the backfill and the migration's record adds nothing.

-- 1. Run duration histogram: finished runs per duration band, in the minute they finished
--    (bands: < 1 s, 1-5 s, 5-15 s, 15-60 s, 1-5 min, 5-30 min, 30 min +). The two views that fed
--    run_stats_state (run_stats_finished_mv: finished runs by finish minute; run_stats_queue_mv:
--    queue waits by start minute) become one, run_stats_mv, which adds the histogram: the rows
--    they read are disjoint (queue waits ride on run.queued / run.started rows), so each row is
--    counted as before, and every insert writes one run_stats_state part instead of two.
ALTER TABLE {db}.run_stats_state
    ADD COLUMN IF NOT EXISTS duration_lt_1s      SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_1_5s       SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_5_15s      SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_15_60s     SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_1_5min     SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_5_30min    SimpleAggregateFunction(sum, UInt64),
    ADD COLUMN IF NOT EXISTS duration_30min_plus SimpleAggregateFunction(sum, UInt64);

DROP VIEW IF EXISTS {db}.run_stats_finished_mv;

DROP VIEW IF EXISTS {db}.run_stats_queue_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_stats_mv TO {db}.run_stats_state AS
SELECT
    bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
    anyLast(workflow_name) AS workflow_name,
    countIf(fin) AS finished,
    countIf(fin AND status = 'success') AS succeeded,
    countIf(fin AND status = 'failed') AS failed,
    countIf(fin AND status = 'stopped') AS stopped,
    sumIf(toFloat64(d), fin) AS duration_sum_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(toFloat64(d), fin) AS duration_digest,
    countIf(NOT fin) AS queue_samples,
    sumIf(toFloat64(q), NOT fin) AS queue_wait_sum_ms,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(toFloat64(q), NOT fin) AS queue_wait_digest,
    countIf(fin AND d < 1000) AS duration_lt_1s,
    countIf(fin AND d BETWEEN 1000 AND 4999) AS duration_1_5s,
    countIf(fin AND d BETWEEN 5000 AND 14999) AS duration_5_15s,
    countIf(fin AND d BETWEEN 15000 AND 59999) AS duration_15_60s,
    countIf(fin AND d BETWEEN 60000 AND 299999) AS duration_1_5min,
    countIf(fin AND d BETWEEN 300000 AND 1799999) AS duration_5_30min,
    countIf(fin AND d >= 1800000) AS duration_30min_plus
FROM
(
    SELECT
        type = 'run.finished' AS fin,
        toStartOfMinute(if(fin, ts, assumeNotNull(queue_wait_at))) AS bucket,
        account_id, workflow_id, workflow_version, workflow_type, trigger,
        ifNull(site_id, '') AS site_id, ifNull(card_id, '') AS card_id, workflow_name, status,
        if(fin, dateDiff('millisecond', assumeNotNull(started_at), ts), 0) AS d,
        ifNull(queue_wait_ms, 0) AS q
    FROM {db}.events
    WHERE is_new = 1 AND (type = 'run.finished' OR queue_wait_ms IS NOT NULL)
)
GROUP BY bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

-- Histogram of the runs already stored (every other column 0: sums are unchanged). Skipped
-- when any histogram count exists (a re-run, or a database created with this migration).
INSERT INTO {db}.run_stats_state
    (bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
     workflow_name, duration_lt_1s, duration_1_5s, duration_5_15s, duration_15_60s, duration_1_5min,
     duration_5_30min, duration_30min_plus)
SELECT
    toStartOfMinute(ts) AS bucket, account_id, workflow_id, workflow_version, workflow_type, trigger,
    ifNull(site_id, '') AS site_id, ifNull(card_id, '') AS card_id,
    anyLast(workflow_name),
    countIf(d < 1000), countIf(d BETWEEN 1000 AND 4999), countIf(d BETWEEN 5000 AND 14999),
    countIf(d BETWEEN 15000 AND 59999), countIf(d BETWEEN 60000 AND 299999),
    countIf(d BETWEEN 300000 AND 1799999), countIf(d >= 1800000)
FROM
(
    SELECT ts, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
           workflow_name, dateDiff('millisecond', assumeNotNull(started_at), ts) AS d
    FROM {db}.events FINAL
    WHERE type = 'run.finished'
)
WHERE (SELECT sum(duration_lt_1s + duration_1_5s + duration_5_15s + duration_15_60s + duration_1_5min
                  + duration_5_30min + duration_30min_plus) FROM {db}.run_stats_state) = 0
GROUP BY bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

-- 2. Run notes: the few events the failure and replay panels need, one row each, with the run's
--    dimensions. Fed only by failed finishes and by replay runs' lifecycle events (a few percent
--    of the stream), through one view:
--      scope 'run'    a failed run.finished   (step_id '', attempt 0)
--      scope 'step'   a failed step.finished  (the attempt's step_id and attempt)
--      scope 'replay' run.queued / run.started / run.finished of a run that replays another
--                     (step_id = the event type, attempt 0; every event of a replay carries replay_of)
--    A failed finish of a replay run is both a 'run' and a 'replay' row. The latest event of a key
--    wins (ReplacingMergeTree on ts); read with FINAL to see each key once before a merge too
--    (the table is small).
CREATE TABLE IF NOT EXISTS {db}.run_notes
(
    scope            LowCardinality(String),
    account_id       LowCardinality(String),
    run_id           String,
    step_id          String,
    attempt          UInt16,
    ts               DateTime64(3, 'UTC'),
    started_at       Nullable(DateTime64(3, 'UTC')),
    workflow_id      LowCardinality(String),
    workflow_name    LowCardinality(String),
    workflow_version UInt32,
    workflow_type    LowCardinality(String),
    trigger          LowCardinality(String),
    site_id          Nullable(String),
    card_id          Nullable(String),
    status           LowCardinality(Nullable(String)),
    replay_mode      LowCardinality(Nullable(String)),
    step_index       Nullable(UInt16),
    step_name        Nullable(String),
    step_type        LowCardinality(Nullable(String)),
    error_code       LowCardinality(Nullable(String)),
    error_class      LowCardinality(Nullable(String)),
    error_message    Nullable(String)
)
ENGINE = ReplacingMergeTree(ts)
ORDER BY (scope, account_id, run_id, step_id, attempt)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_notes_mv TO {db}.run_notes AS
SELECT
    scope, account_id, run_id,
    if(scope = 'replay', type, ifNull(step_id, '')) AS step_id,
    if(scope = 'replay', 0, ifNull(attempt, 0)) AS attempt,
    ts, started_at, workflow_id, workflow_name, workflow_version, workflow_type, trigger, site_id, card_id,
    status, replay_mode, step_index, step_name, step_type, error_code, error_class, error_message
FROM {db}.events
ARRAY JOIN arrayFilter(x -> x != '', [
    if(status = 'failed' AND type IN ('run.finished', 'step.finished'), if(type = 'run.finished', 'run', 'step'), ''),
    if(replay_of IS NOT NULL AND type IN ('run.queued', 'run.started', 'run.finished'), 'replay', '')]) AS scope
WHERE is_new = 1 AND ((status = 'failed' AND type IN ('run.finished', 'step.finished'))
       OR (replay_of IS NOT NULL AND type IN ('run.queued', 'run.started', 'run.finished')));

-- The notes of what is already stored (skipped when the table has any: a re-run).
INSERT INTO {db}.run_notes
SELECT
    scope, account_id, run_id,
    if(scope = 'replay', type, ifNull(step_id, '')) AS step_id,
    if(scope = 'replay', 0, ifNull(attempt, 0)) AS attempt,
    ts, started_at, workflow_id, workflow_name, workflow_version, workflow_type, trigger, site_id, card_id,
    status, replay_mode, step_index, step_name, step_type, error_code, error_class, error_message
FROM {db}.events FINAL
ARRAY JOIN arrayFilter(x -> x != '', [
    if(status = 'failed' AND type IN ('run.finished', 'step.finished'), if(type = 'run.finished', 'run', 'step'), ''),
    if(replay_of IS NOT NULL AND type IN ('run.queued', 'run.started', 'run.finished'), 'replay', '')]) AS scope
WHERE ((status = 'failed' AND type IN ('run.finished', 'step.finished'))
       OR (replay_of IS NOT NULL AND type IN ('run.queued', 'run.started', 'run.finished')))
  AND (SELECT count() FROM {db}.run_notes) = 0;

-- 3. Queue depth: the same running sums, over queue_state FINAL (an in-order merge of the
--    sorted parts) instead of a hash GROUP BY of every bucket ever stored: same rows, ~5x less
--    work for the queue panels and `runlens stats queue`.
CREATE OR REPLACE VIEW {db}.queue_depth AS
SELECT
    bucket AS time, account_id,
    sum(toInt64(pending_delta)) OVER w AS pending,
    sum(toInt64(running_delta)) OVER w AS running,
    toUInt64(queued) AS arrivals, toUInt64(started) AS started, toUInt64(finished) AS completions
FROM {db}.queue_state FINAL
WINDOW w AS (PARTITION BY account_id ORDER BY bucket ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW);

-- 4. Step statistics per hour: the minute rows of step_stats_state rolled up as they are
--    inserted (a materialized view on step_stats_state, so it sees only the minute aggregates
--    of each insert, not the events). Readers take whole hours of a range from here and the
--    minutes at its ragged ends from step_stats_state: the same sums and digests, ~1/30 of the rows.
CREATE TABLE IF NOT EXISTS {db}.step_stats_hourly AS {db}.step_stats_state
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket, workflow_id, workflow_version, step_id, step_name, step_type)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.step_stats_hourly_mv TO {db}.step_stats_hourly AS
SELECT
    hour AS bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
    idx AS step_index, n AS executions, ok AS succeeded, bad AS failed, skip AS skipped, retry AS retries,
    dsum AS duration_sum_ms, ddig AS duration_digest, dl AS delays, dlate AS delays_late,
    lsum AS lateness_sum_ms, lmax AS lateness_max_ms
FROM
(
    SELECT
        toStartOfHour(bucket) AS hour, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
        max(step_index) AS idx, sum(executions) AS n, sum(succeeded) AS ok, sum(failed) AS bad,
        sum(skipped) AS skip, sum(retries) AS retry, sum(duration_sum_ms) AS dsum,
        quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest) AS ddig,
        sum(delays) AS dl, sum(delays_late) AS dlate, sum(lateness_sum_ms) AS lsum, max(lateness_max_ms) AS lmax
    FROM {db}.step_stats_state
    GROUP BY hour, account_id, workflow_id, workflow_version, step_id, step_name, step_type
);

INSERT INTO {db}.step_stats_hourly
    (bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type, step_index, executions,
     succeeded, failed, skipped, retries, duration_sum_ms, duration_digest, delays, delays_late,
     lateness_sum_ms, lateness_max_ms)
SELECT
    toStartOfHour(bucket) AS hour, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
    max(step_index), sum(executions), sum(succeeded), sum(failed), sum(skipped), sum(retries),
    sum(duration_sum_ms), quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest),
    sum(delays), sum(delays_late), sum(lateness_sum_ms), max(lateness_max_ms)
FROM {db}.step_stats_state
WHERE (SELECT count() FROM {db}.step_stats_hourly) = 0
GROUP BY hour, account_id, workflow_id, workflow_version, step_id, step_name, step_type;

-- 5. Run statistics per hour, rolled up from run_stats_state the same way (after the histogram
--    backfill above, so the copy below includes it). ~1/30 of the minute rows at 10M events.
CREATE TABLE IF NOT EXISTS {db}.run_stats_hourly AS {db}.run_stats_state
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_stats_hourly_mv TO {db}.run_stats_hourly AS
SELECT
    hour AS bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
    name AS workflow_name, fin AS finished, ok AS succeeded, bad AS failed, stop AS stopped,
    dsum AS duration_sum_ms, ddig AS duration_digest, qn AS queue_samples, qsum AS queue_wait_sum_ms,
    qdig AS queue_wait_digest, h1 AS duration_lt_1s, h2 AS duration_1_5s, h3 AS duration_5_15s,
    h4 AS duration_15_60s, h5 AS duration_1_5min, h6 AS duration_5_30min, h7 AS duration_30min_plus
FROM
(
    SELECT
        toStartOfHour(bucket) AS hour, account_id, workflow_id, workflow_version, workflow_type, trigger,
        site_id, card_id, anyLast(workflow_name) AS name,
        sum(finished) AS fin, sum(succeeded) AS ok, sum(failed) AS bad, sum(stopped) AS stop,
        sum(duration_sum_ms) AS dsum,
        quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest) AS ddig,
        sum(queue_samples) AS qn, sum(queue_wait_sum_ms) AS qsum,
        quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(queue_wait_digest) AS qdig,
        sum(duration_lt_1s) AS h1, sum(duration_1_5s) AS h2, sum(duration_5_15s) AS h3,
        sum(duration_15_60s) AS h4, sum(duration_1_5min) AS h5, sum(duration_5_30min) AS h6,
        sum(duration_30min_plus) AS h7
    FROM {db}.run_stats_state
    GROUP BY hour, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id
);

INSERT INTO {db}.run_stats_hourly
    (bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id,
     workflow_name, finished, succeeded, failed, stopped, duration_sum_ms, duration_digest, queue_samples,
     queue_wait_sum_ms, queue_wait_digest, duration_lt_1s, duration_1_5s, duration_5_15s, duration_15_60s,
     duration_1_5min, duration_5_30min, duration_30min_plus)
SELECT
    toStartOfHour(bucket) AS hour, account_id, workflow_id, workflow_version, workflow_type, trigger,
    site_id, card_id, anyLast(workflow_name),
    sum(finished), sum(succeeded), sum(failed), sum(stopped), sum(duration_sum_ms),
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest),
    sum(queue_samples), sum(queue_wait_sum_ms),
    quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(queue_wait_digest),
    sum(duration_lt_1s), sum(duration_1_5s), sum(duration_5_15s), sum(duration_15_60s),
    sum(duration_1_5min), sum(duration_5_30min), sum(duration_30min_plus)
FROM {db}.run_stats_state
WHERE (SELECT count() FROM {db}.run_stats_hourly) = 0
GROUP BY hour, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, card_id;

-- 6. Step statistics per day, rolled up from step_stats_hourly as it is inserted. A t-digest
--    state holds one centroid per sample until it has thousands, so merging a week of hourly
--    step digests still touches every sample; a day's digest is compressed. Readers take whole
--    days from here, whole hours of the partial first / last day from step_stats_hourly, and the
--    remaining minutes from step_stats_state.
CREATE TABLE IF NOT EXISTS {db}.step_stats_daily AS {db}.step_stats_state
ENGINE = AggregatingMergeTree
ORDER BY (account_id, bucket, workflow_id, workflow_version, step_id, step_name, step_type)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.step_stats_daily_mv TO {db}.step_stats_daily AS
SELECT
    day AS bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
    idx AS step_index, n AS executions, ok AS succeeded, bad AS failed, skip AS skipped, retry AS retries,
    dsum AS duration_sum_ms, ddig AS duration_digest, dl AS delays, dlate AS delays_late,
    lsum AS lateness_sum_ms, lmax AS lateness_max_ms
FROM
(
    SELECT
        toStartOfDay(bucket) AS day, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
        max(step_index) AS idx, sum(executions) AS n, sum(succeeded) AS ok, sum(failed) AS bad,
        sum(skipped) AS skip, sum(retries) AS retry, sum(duration_sum_ms) AS dsum,
        quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest) AS ddig,
        sum(delays) AS dl, sum(delays_late) AS dlate, sum(lateness_sum_ms) AS lsum, max(lateness_max_ms) AS lmax
    FROM {db}.step_stats_hourly
    GROUP BY day, account_id, workflow_id, workflow_version, step_id, step_name, step_type
);

INSERT INTO {db}.step_stats_daily
    (bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type, step_index, executions,
     succeeded, failed, skipped, retries, duration_sum_ms, duration_digest, delays, delays_late,
     lateness_sum_ms, lateness_max_ms)
SELECT
    toStartOfDay(bucket) AS day, account_id, workflow_id, workflow_version, step_id, step_name, step_type,
    max(step_index), sum(executions), sum(succeeded), sum(failed), sum(skipped), sum(retries),
    sum(duration_sum_ms), quantilesTDigestMergeState(0.5, 0.9, 0.95, 0.99)(duration_digest),
    sum(delays), sum(delays_late), sum(lateness_sum_ms), max(lateness_max_ms)
FROM {db}.step_stats_hourly
WHERE (SELECT count() FROM {db}.step_stats_daily) = 0
GROUP BY day, account_id, workflow_id, workflow_version, step_id, step_name, step_type;
