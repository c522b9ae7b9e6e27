-- The runs of a time range found by time, not by folding every run of the account. The run list
-- (`runlens runs list`, `export`, the Workflow Runs dashboard) places a run at its start (else
-- its queue time, else its finish), which only the fold of run_state knows, and run_state is
-- ordered by run id: a one-day list folded every run the account ever had.
--
-- run_times holds, ordered by time, every moment a run's events give it: the time of run.queued,
-- run.started and run.finished, and the started_at a run.finished carries. The moment the list
-- places a run at is one of them, so the runs whose moment is in a range are among the runs with
-- a row in it: readers take those run ids from here and fold only them, by key, then filter on
-- the folded moment as before (the answer is the same; extra candidates fall out).
-- Rows are facts that never change; a repeated row (a redelivered or retried insert, a replay of
-- the backfill below) is the same key, merged away by ReplacingMergeTree and harmless before that
-- (readers take distinct run ids). Rows expire with the events they come from (retention).
CREATE TABLE IF NOT EXISTS {db}.run_times
(
    account_id LowCardinality(String),
    moment     DateTime64(3, 'UTC'),
    run_id     String
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, moment, run_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_times_mv TO {db}.run_times AS
SELECT DISTINCT account_id, moment, run_id
FROM {db}.events
ARRAY JOIN if(type = 'run.finished' AND started_at IS NOT NULL, [ts, assumeNotNull(started_at)], [ts]) AS moment
WHERE type IN ('run.queued', 'run.started', 'run.finished');

-- The moments of the runs stored before this migration. The view above exists first, so an
-- insert landing between the two statements is in run_times either way (twice at worst, which is
-- harmless); a re-run after a crash adds only repeated rows.
INSERT INTO {db}.run_times (account_id, moment, run_id)
SELECT DISTINCT account_id, moment, run_id
FROM {db}.events
ARRAY JOIN if(type = 'run.finished' AND started_at IS NOT NULL, [ts, assumeNotNull(started_at)], [ts]) AS moment
WHERE type IN ('run.queued', 'run.started', 'run.finished');
