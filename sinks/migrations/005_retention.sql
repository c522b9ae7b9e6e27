-- Retention by plan. Each account may have a plan; a plan keeps an account's runs and steps
-- for its number of days (free 7, pro 30, enterprise 365 to start with; change the rows to
-- change the plans). An account row may override its plan's days (0 = keep forever).
-- Accounts without a row keep everything, unless a plan named 'default' exists: then it
-- applies to them.
--
-- The tables are the configuration; the expiry itself is ClickHouse TTL on the stored tables
-- (events, run_state, step_state), compiled from them by `runlens retention apply` (and by
-- `runlens retention set` / `plan`, see sinks/retention.py): ClickHouse does not allow a
-- dictionary or a join in a TTL expression, so the per-account days are written into the TTL
-- as a constant mapping. Ingestion never depends on this configuration.
-- Both tables keep the latest row per key (ReplacingMergeTree on updated_at); read them with FINAL.
CREATE TABLE IF NOT EXISTS {db}.retention_plans
(
    plan           String,
    retention_days UInt32,
    updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY plan;

CREATE TABLE IF NOT EXISTS {db}.account_plans
(
    account_id     String,
    plan           String,
    retention_days Nullable(UInt32),
    updated_at     DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY account_id;

INSERT INTO {db}.retention_plans (plan, retention_days, updated_at)
VALUES ('free', 7, '2000-01-01 00:00:00'), ('pro', 30, '2000-01-01 00:00:00'),
       ('enterprise', 365, '2000-01-01 00:00:00');
