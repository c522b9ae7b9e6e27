-- replay_outcomes: how often replays succeed, exact vs modified, per workflow.
--
-- Every replay of the account (a run with replay_of set) against its original. A replay
-- fixed the failure when the original failed and the replay succeeded. The rows with
-- workflow_id '*' add up all workflows per replay mode. Window on the replay's start (or
-- queue) time.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    replays started at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    replays started before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   workflow_id       the workflow ('*' = all workflows)
--   workflow_name     its name
--   replay_mode       exact or modified
--   replays           replays
--   finished          of those, finished (success, failed or stopped)
--   succeeded         replays that succeeded
--   failed            replays that failed
--   fixed             replays of a failed original that succeeded
--   same_error        failed replays that failed with the original's error code
--   success_pct       succeeded / finished, percent
--   fixed_pct         fixed / replays of failed originals, percent
WITH
    replays AS (
        SELECT run_id, replay_of, ifNull(replay_mode, '') AS replay_mode, workflow_id, workflow_name,
               status, error_code, coalesce(started_at, queued_at) AS at
        FROM runs
        WHERE account_id = {account:String} AND replay_of IS NOT NULL
          AND coalesce(started_at, queued_at) >= {since:DateTime64(3, 'UTC')}
          AND coalesce(started_at, queued_at) < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
    ),
    originals AS (
        SELECT run_id, status, error_code FROM runs
        WHERE account_id = {account:String} AND run_id IN (SELECT replay_of FROM replays)
    ),
    pairs AS (
        SELECT toString(r.workflow_id) AS workflow_id, r.workflow_name AS workflow_name, r.replay_mode AS replay_mode,
               r.at AS at, r.status AS status, r.error_code AS error_code,
               o.status AS original_status, o.error_code AS original_error_code
        FROM replays AS r LEFT JOIN originals AS o ON o.run_id = r.replay_of
    ),
    grouped AS (
        SELECT workflow_id, argMax(workflow_name, at) AS workflow_name, replay_mode, count() AS replays,
               countIf(status IN ('success', 'failed', 'stopped')) AS finished,
               countIf(status = 'success') AS succeeded, countIf(status = 'failed') AS failed,
               countIf(original_status = 'failed' AND status = 'success') AS fixed,
               countIf(status = 'failed' AND error_code = original_error_code) AS same_error,
               countIf(original_status = 'failed') AS of_failed, 0 AS is_total
        FROM pairs GROUP BY workflow_id, replay_mode
        UNION ALL
        SELECT '*', 'all workflows', replay_mode, count(), countIf(status IN ('success', 'failed', 'stopped')),
               countIf(status = 'success'), countIf(status = 'failed'),
               countIf(original_status = 'failed' AND status = 'success'),
               countIf(status = 'failed' AND error_code = original_error_code),
               countIf(original_status = 'failed'), 1
        FROM pairs GROUP BY replay_mode
    )
SELECT workflow_id, workflow_name, replay_mode, replays, finished, succeeded, failed, fixed, same_error,
       round(100 * succeeded / nullIf(finished, 0), 1) AS success_pct,
       round(100 * fixed / nullIf(of_failed, 0), 1) AS fixed_pct
FROM grouped
ORDER BY is_total, workflow_id, replay_mode
SETTINGS join_use_nulls = 1
