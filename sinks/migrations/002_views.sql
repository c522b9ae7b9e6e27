-- The query surface of the contract: plain SELECT, no FINAL needed by the caller.
CREATE OR REPLACE VIEW {db}.runs AS
SELECT
    account_id,
    run_id,
    ctx.workflow_id AS workflow_id,
    ctx.workflow_name AS workflow_name,
    ctx.workflow_version AS workflow_version,
    ctx.workflow_version_name AS workflow_version_name,
    ctx.workflow_type AS workflow_type,
    ctx.trigger AS trigger,
    ctx.site_id AS site_id,
    ctx.site_name AS site_name,
    ctx.card_id AS card_id,
    ctx.card_name AS card_name,
    ctx.contact_id AS contact_id,
    multiIf(finished_at IS NOT NULL, fin.status,
            started_ts IS NOT NULL OR step_seen_at IS NOT NULL, 'running',
            'pending') AS status,
    queued_at,
    coalesce(fin.started_at, started_ts) AS started_at,
    finished_at,
    if(queued_at IS NULL OR coalesce(started_ts, fin.started_at) IS NULL, NULL,
       dateDiff('millisecond', queued_at, coalesce(started_ts, fin.started_at))) AS queue_ms,
    if(finished_at IS NULL OR coalesce(fin.started_at, started_ts) IS NULL, NULL,
       dateDiff('millisecond', coalesce(fin.started_at, started_ts), finished_at)) AS duration_ms,
    if(finished_at IS NULL, NULL, fin.error_code) AS error_code,
    if(finished_at IS NULL, NULL, fin.error_class) AS error_class,
    if(finished_at IS NULL, NULL, fin.error_message) AS error_message,
    ctx.replay_of AS replay_of,
    ctx.replay_mode AS replay_mode
FROM
(
    SELECT
        account_id,
        run_id,
        argMaxMerge(context) AS ctx,
        min(queued_at) AS queued_at,
        min(started_ts) AS started_ts,
        min(step_seen_at) AS step_seen_at,
        max(finished_at) AS finished_at,
        argMaxMerge(finish) AS fin
    FROM {db}.run_state
    GROUP BY account_id, run_id
);

CREATE OR REPLACE VIEW {db}.steps AS
SELECT
    account_id,
    run_id,
    ctx.workflow_id AS workflow_id,
    step_id,
    ctx.step_index AS step_index,
    ctx.step_name AS step_name,
    ctx.step_type AS step_type,
    attempt,
    if(finished_at IS NULL, 'running', fin.status) AS status,
    coalesce(fin.started_at, started_ts) AS started_at,
    finished_at,
    if(finished_at IS NULL OR coalesce(fin.started_at, started_ts) IS NULL, NULL,
       dateDiff('millisecond', coalesce(fin.started_at, started_ts), finished_at)) AS duration_ms,
    if(finished_at IS NULL, NULL, fin.error_code) AS error_code,
    if(finished_at IS NULL, NULL, fin.error_class) AS error_class,
    if(finished_at IS NULL, NULL, fin.error_message) AS error_message,
    if(finished_at IS NULL, NULL, fin.error_stack_trace) AS error_stack_trace,
    if(finished_at IS NULL, NULL, fin.error_suggested_fix) AS error_suggested_fix,
    if(finished_at IS NULL, NULL, fin.input) AS input,
    if(finished_at IS NULL, NULL, fin.output) AS output,
    if(finished_at IS NULL, NULL, fin.condition_result) AS condition_result,
    if(finished_at IS NULL, NULL, fin.branch) AS branch,
    if(finished_at IS NULL, NULL, fin.action_kind) AS action_kind,
    if(finished_at IS NULL, NULL, fin.target) AS target,
    if(finished_at IS NULL, NULL, fin.scheduled_resume_at) AS scheduled_resume_at,
    if(finished_at IS NULL, NULL, fin.resumed_at) AS resumed_at
FROM
(
    SELECT
        account_id,
        run_id,
        step_id,
        attempt,
        argMaxMerge(context) AS ctx,
        min(started_ts) AS started_ts,
        max(finished_at) AS finished_at,
        argMaxMerge(finish) AS fin
    FROM {db}.step_state
    GROUP BY account_id, run_id, step_id, attempt
);

-- Dead letters once each (the table may briefly hold a redelivered copy).
CREATE OR REPLACE VIEW {db}.rejected_events AS
SELECT received_at, source, source_partition, source_offset, source_index, reason, field, key, raw
FROM {db}.dead_letters FINAL;
