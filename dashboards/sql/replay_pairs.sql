-- replay_pairs: each replay next to its original: outcome, error and failing step of both.
--
-- A run's failing step is the first step (by position) whose last attempt failed. fixed is
-- true when the original failed and the replay succeeded; same_step when both failed at the
-- same step. Window on the replay's start (or queue) time.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    replays started at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    replays started before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   replay_run_id            the replay
--   original_run_id          the run it replays
--   workflow_id              the workflow
--   replay_mode              exact or modified
--   original_version         workflow version of the original
--   replay_version           workflow version of the replay
--   original_status          the original's final status
--   replay_status            the replay's final status
--   original_error_code      the original's error code
--   replay_error_code        the replay's error code
--   original_failed_step     the original's failing step
--   replay_failed_step       the replay's failing step
--   original_duration_ms     the original's duration
--   replay_duration_ms       the replay's duration
--   fixed                    original failed and replay succeeded
--   same_step                both failed at the same step
WITH
    replays AS (
        SELECT run_id, replay_of, replay_mode, workflow_id, workflow_version, status, error_code, duration_ms,
               coalesce(started_at, queued_at) AS at
        FROM runs
        WHERE account_id = {account:String} AND replay_of IS NOT NULL
          AND coalesce(started_at, queued_at) >= {since:DateTime64(3, 'UTC')}
          AND coalesce(started_at, queued_at) < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
    ),
    originals AS (
        SELECT run_id, workflow_version, status, error_code, duration_ms FROM runs
        WHERE account_id = {account:String} AND run_id IN (SELECT replay_of FROM replays)
    ),
    failing AS (
        SELECT run_id, argMin(step_name, (step_index, step_id)) AS failed_step
        FROM (
            SELECT run_id, step_id, any(step_index) AS step_index, any(step_name) AS step_name,
                   argMax(status, attempt) AS final_status
            FROM steps
            WHERE account_id = {account:String}
              AND run_id IN (SELECT run_id FROM replays UNION ALL SELECT run_id FROM originals)
            GROUP BY run_id, step_id
        )
        WHERE final_status = 'failed'
        GROUP BY run_id
    )
SELECT
    r.run_id AS replay_run_id, r.replay_of AS original_run_id, r.workflow_id AS workflow_id,
    r.replay_mode AS replay_mode, o.workflow_version AS original_version, r.workflow_version AS replay_version,
    o.status AS original_status, r.status AS replay_status,
    o.error_code AS original_error_code, r.error_code AS replay_error_code,
    fo.failed_step AS original_failed_step, fr.failed_step AS replay_failed_step,
    o.duration_ms AS original_duration_ms, r.duration_ms AS replay_duration_ms,
    ifNull(o.status = 'failed' AND r.status = 'success', false) AS fixed,
    ifNull(o.status = 'failed' AND r.status = 'failed' AND fo.failed_step = fr.failed_step, false) AS same_step
FROM replays AS r
LEFT JOIN originals AS o ON o.run_id = r.replay_of
LEFT JOIN failing AS fo ON fo.run_id = r.replay_of
LEFT JOIN failing AS fr ON fr.run_id = r.run_id
ORDER BY r.at, r.run_id
SETTINGS join_use_nulls = 1
