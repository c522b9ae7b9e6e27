-- Replay and stop commands and what the engine did with them (docs/commands.md). The worker
-- stores every record of <prefix>.commands in run_commands and every record of
-- <prefix>.command-outcomes in run_command_outcomes (streams/commands.py). Two tables, not one
-- with nullable outcome columns: a command and its outcome arrive on two topics at different
-- times, and a ReplacingMergeTree keyed by (account_id, command_id) keeps one row per key, so
-- one table would replace the command's row with the outcome's. Each table keeps one row per
-- (account_id, command_id) however often its record is delivered (a retried insert is also
-- dropped whole by its deduplication token); the `commands` view pairs them, newest decision
-- first, without FINAL in the caller's query. Both tables carry account_id and are row-policy
-- scoped per account exactly like run_state (sinks/tenancy.py).
CREATE TABLE IF NOT EXISTS {db}.run_commands
(
    account_id       String,
    command_id       String,
    run_id           String,
    action           LowCardinality(String),
    mode             Nullable(String),
    overrides        Map(String, String),
    requested_by     String,
    requested_at     DateTime64(3, 'UTC'),
    received_at      DateTime64(3, 'UTC'),
    source_partition Int32,
    source_offset    Int64
)
ENGINE = ReplacingMergeTree
ORDER BY (account_id, command_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.run_command_outcomes
(
    account_id       String,
    command_id       String,
    run_id           String,
    action           LowCardinality(String),
    outcome          LowCardinality(String),
    new_run_id       Nullable(String),
    reason           String,
    decided_at       DateTime64(3, 'UTC'),
    received_at      DateTime64(3, 'UTC'),
    source_partition Int32,
    source_offset    Int64
)
ENGINE = ReplacingMergeTree(decided_at)
ORDER BY (account_id, command_id)
SETTINGS non_replicated_deduplication_window = 1000;

-- One row per command, with its outcome (NULL while the engine has not answered).
CREATE OR REPLACE VIEW {db}.commands AS
SELECT
    c.account_id AS account_id,
    c.command_id AS command_id,
    c.run_id AS run_id,
    c.action AS action,
    c.mode AS mode,
    c.overrides AS overrides,
    c.requested_by AS requested_by,
    c.requested_at AS requested_at,
    o.outcome AS outcome,
    o.new_run_id AS new_run_id,
    o.reason AS reason,
    o.decided_at AS decided_at
FROM (SELECT * FROM {db}.run_commands FINAL) AS c
LEFT JOIN
(
    SELECT account_id, command_id, toNullable(outcome) AS outcome, new_run_id, toNullable(reason) AS reason,
           toNullable(decided_at) AS decided_at
    FROM {db}.run_command_outcomes FINAL
) AS o ON c.account_id = o.account_id AND c.command_id = o.command_id;
