-- Raw events, one row per event_id after merges (ReplacingMergeTree on the natural key).
-- Duplicate deliveries may sit here until a merge; nothing reads counts from this table
-- without deduplicating, and the run/step state below is built from idempotent functions.
-- The worker marks each row: is_new = 0 for a duplicate of an event it stored recently
-- (aggregates skip those), queue_wait_* on the row that completes a run's queued/started pair.
-- No PARTITION BY: one insert is one part, so a batch is stored whole or not at all, which
-- the worker's high-water offset per partition relies on.
CREATE TABLE IF NOT EXISTS {db}.events
(
    event_id              String,
    schema_version        UInt8,
    type                  LowCardinality(String),
    ts                    DateTime64(3, 'UTC'),
    account_id            LowCardinality(String),
    run_id                String,
    workflow_id           LowCardinality(String),
    workflow_name         LowCardinality(String),
    workflow_version      UInt32,
    workflow_version_name Nullable(String),
    workflow_type         LowCardinality(String),
    trigger               LowCardinality(String),
    site_id               Nullable(String),
    site_name             Nullable(String),
    card_id               Nullable(String),
    card_name             Nullable(String),
    contact_id            Nullable(String),
    replay_of             Nullable(String),
    replay_mode           LowCardinality(Nullable(String)),
    status                LowCardinality(Nullable(String)),
    started_at            Nullable(DateTime64(3, 'UTC')),
    error_code            LowCardinality(Nullable(String)),
    error_class           LowCardinality(Nullable(String)),
    error_message         Nullable(String),
    error_stack_trace     Nullable(String),
    error_suggested_fix   Nullable(String),
    step_id               Nullable(String),
    step_index            Nullable(UInt16),
    step_name             Nullable(String),
    step_type             LowCardinality(Nullable(String)),
    attempt               Nullable(UInt16),
    input                 Nullable(String),
    output                Nullable(String),
    condition_result      Nullable(Bool),
    branch                Nullable(String),
    action_kind           LowCardinality(Nullable(String)),
    target                Nullable(String),
    scheduled_resume_at   Nullable(DateTime64(3, 'UTC')),
    resumed_at            Nullable(DateTime64(3, 'UTC')),
    source_partition      UInt32,
    source_offset         Int64,
    source_index          UInt32,
    is_new                UInt8,
    queue_wait_ms         Nullable(Int64),
    queue_wait_at         Nullable(DateTime64(3, 'UTC')),
    ingested_at           DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(ingested_at)
ORDER BY (account_id, run_id, event_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- Latest state of each run, folded from its events with order-independent, duplicate-proof
-- functions (min / max / argMax), so redelivery, replays and out-of-order arrival converge.
CREATE TABLE IF NOT EXISTS {db}.run_state
(
    account_id   LowCardinality(String),
    run_id       String,
    source_partition SimpleAggregateFunction(max, UInt32),
    context      AggregateFunction(argMax, Tuple(
                     workflow_id String, workflow_name String, workflow_version UInt32,
                     workflow_version_name Nullable(String), workflow_type String, trigger String,
                     site_id Nullable(String), site_name Nullable(String), card_id Nullable(String),
                     card_name Nullable(String), contact_id Nullable(String),
                     replay_of Nullable(String), replay_mode Nullable(String)),
                 DateTime64(3, 'UTC')),
    queued_at    SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    started_ts   SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    step_seen_at SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    finished_at  SimpleAggregateFunction(max, Nullable(DateTime64(3, 'UTC'))),
    finish       AggregateFunction(argMax, Tuple(
                     status String, started_at Nullable(DateTime64(3, 'UTC')),
                     error_code Nullable(String), error_class Nullable(String),
                     error_message Nullable(String)),
                 DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account_id, run_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.run_state_mv TO {db}.run_state AS
SELECT
    account_id,
    run_id,
    max(source_partition) AS source_partition,
    argMaxState(
        CAST((workflow_id, workflow_name, workflow_version, workflow_version_name, workflow_type,
              trigger, site_id, site_name, card_id, card_name, contact_id, replay_of, replay_mode),
             'Tuple(workflow_id String, workflow_name String, workflow_version UInt32, workflow_version_name Nullable(String), workflow_type String, trigger String, site_id Nullable(String), site_name Nullable(String), card_id Nullable(String), card_name Nullable(String), contact_id Nullable(String), replay_of Nullable(String), replay_mode Nullable(String))'),
        ts) AS context,
    minIf(toNullable(ts), type = 'run.queued') AS queued_at,
    minIf(toNullable(ts), type = 'run.started') AS started_ts,
    minIf(toNullable(ts), type LIKE 'step.%') AS step_seen_at,
    maxIf(toNullable(ts), type = 'run.finished') AS finished_at,
    argMaxStateIf(
        CAST((assumeNotNull(status), started_at, error_code, error_class, error_message),
             'Tuple(status String, started_at Nullable(DateTime64(3, \'UTC\')), error_code Nullable(String), error_class Nullable(String), error_message Nullable(String))'),
        ts, type = 'run.finished') AS finish
FROM {db}.events
GROUP BY account_id, run_id;

-- Latest state of each step attempt, folded the same way.
CREATE TABLE IF NOT EXISTS {db}.step_state
(
    account_id   LowCardinality(String),
    run_id       String,
    step_id      String,
    attempt      UInt16,
    context      AggregateFunction(argMax, Tuple(
                     workflow_id String, step_index UInt16, step_name String, step_type String),
                 DateTime64(3, 'UTC')),
    started_ts   SimpleAggregateFunction(min, Nullable(DateTime64(3, 'UTC'))),
    finished_at  SimpleAggregateFunction(max, Nullable(DateTime64(3, 'UTC'))),
    finish       AggregateFunction(argMax, Tuple(
                     status String, started_at Nullable(DateTime64(3, 'UTC')),
                     error_code Nullable(String), error_class Nullable(String),
                     error_message Nullable(String), error_stack_trace Nullable(String),
                     error_suggested_fix Nullable(String), input Nullable(String),
                     output Nullable(String), condition_result Nullable(Bool), branch Nullable(String),
                     action_kind Nullable(String), target Nullable(String),
                     scheduled_resume_at Nullable(DateTime64(3, 'UTC')),
                     resumed_at Nullable(DateTime64(3, 'UTC'))),
                 DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (account_id, run_id, step_id, attempt)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.step_state_mv TO {db}.step_state AS
SELECT
    account_id,
    run_id,
    assumeNotNull(step_id) AS step_id,
    assumeNotNull(attempt) AS attempt,
    argMaxState(
        CAST((workflow_id, assumeNotNull(step_index), assumeNotNull(step_name), assumeNotNull(step_type)),
             'Tuple(workflow_id String, step_index UInt16, step_name String, step_type String)'),
        ts) AS context,
    minIf(toNullable(ts), type = 'step.started') AS started_ts,
    maxIf(toNullable(ts), type = 'step.finished') AS finished_at,
    argMaxStateIf(
        CAST((assumeNotNull(status), started_at, error_code, error_class, error_message,
              error_stack_trace, error_suggested_fix, input, output, condition_result, branch,
              action_kind, target, scheduled_resume_at, resumed_at),
             'Tuple(status String, started_at Nullable(DateTime64(3, \'UTC\')), error_code Nullable(String), error_class Nullable(String), error_message Nullable(String), error_stack_trace Nullable(String), error_suggested_fix Nullable(String), input Nullable(String), output Nullable(String), condition_result Nullable(Bool), branch Nullable(String), action_kind Nullable(String), target Nullable(String), scheduled_resume_at Nullable(DateTime64(3, \'UTC\')), resumed_at Nullable(DateTime64(3, \'UTC\')))'),
        ts, type = 'step.finished') AS finish
FROM {db}.events
WHERE type LIKE 'step.%'
GROUP BY account_id, run_id, step_id, attempt;

-- Invalid input, kept with its reason and where it came from. Idempotent on the source
-- position and content: a record dead-lettered again after a worker restart, or a file
-- published twice, is kept once.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    received_at      DateTime64(3, 'UTC'),
    source           LowCardinality(String),
    source_partition Int32,
    source_offset    Int64,
    source_index     UInt32,
    reason           String,
    field            Nullable(String),
    key              Nullable(String),
    raw              String,
    dlq_partition    Int32,
    dlq_offset       Int64,
    raw_hash         UInt64 MATERIALIZED cityHash64(raw)
)
ENGINE = ReplacingMergeTree
ORDER BY (source, source_partition, source_offset, source_index, raw_hash);
