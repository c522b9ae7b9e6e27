-- failures_by_code: error codes ranked by failed runs, with retried step failures alongside.
--
-- failed_runs counts runs that finished failed with the code; failed_attempts counts every
-- failed step attempt with the code (retries included), recovered_attempts those a later
-- attempt of the same step in the same run got past. Window on finish times.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   error_code           machine-readable error code
--   error_class          config, data, external_service, logic or internal
--   failed_runs          runs that finished failed with this code
--   pct_of_failures      share of the window's failed runs
--   failed_attempts      failed step attempts with this code
--   recovered_attempts   of those, attempts a retry of the same step recovered from
--   steps                affected step names
--   workflows            affected workflows
--   first_seen           first failed attempt (or failed run) in the window
--   last_seen            last failed attempt (or failed run) in the window
WITH
    run_failures AS (
        SELECT error_code, any(error_class) AS error_class, count() AS failed_runs,
               min(finished_at) AS first_run, max(finished_at) AS last_run,
               groupUniqArray(workflow_id) AS run_workflows
        FROM runs
        WHERE account_id = {account:String} AND status = 'failed'
          AND finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
        GROUP BY error_code
    ),
    attempts AS (
        SELECT s.run_id AS run_id, s.step_id AS step_id, s.attempt AS attempt, s.status AS status,
               s.error_code AS error_code, s.error_class AS error_class, s.step_name AS step_name,
               s.workflow_id AS workflow_id, s.finished_at AS finished_at,
               max(s.attempt) OVER (PARTITION BY s.run_id, s.step_id) AS last_attempt,
               argMax(s.status, s.attempt) OVER (PARTITION BY s.run_id, s.step_id) AS last_status
        FROM steps AS s
        WHERE s.account_id = {account:String}
          AND s.finished_at >= {since:DateTime64(3, 'UTC')} AND s.finished_at < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR s.workflow_id = {workflow:String} OR s.run_id IN (
                SELECT run_id FROM runs WHERE account_id = {account:String} AND workflow_name = {workflow:String}))
    ),
    step_failures AS (
        SELECT error_code, any(error_class) AS error_class, count() AS failed_attempts,
               countIf(attempt < last_attempt AND last_status = 'success') AS recovered_attempts,
               arraySort(groupUniqArray(step_name)) AS steps, groupUniqArray(workflow_id) AS step_workflows,
               min(finished_at) AS first_attempt, max(finished_at) AS last_attempt_at
        FROM attempts WHERE status = 'failed'
        GROUP BY error_code
    )
SELECT
    coalesce(r.error_code, s.error_code) AS error_code,
    coalesce(r.error_class, s.error_class) AS error_class,
    ifNull(r.failed_runs, 0) AS failed_runs,
    round(100 * failed_runs / nullIf((SELECT sum(failed_runs) FROM run_failures), 0), 1) AS pct_of_failures,
    ifNull(s.failed_attempts, 0) AS failed_attempts,
    ifNull(s.recovered_attempts, 0) AS recovered_attempts,
    ifNull(s.steps, []) AS steps,
    arraySort(arrayDistinct(arrayConcat(ifNull(r.run_workflows, []), ifNull(s.step_workflows, [])))) AS workflows,
    least(ifNull(r.first_run, s.first_attempt), ifNull(s.first_attempt, r.first_run)) AS first_seen,
    greatest(ifNull(r.last_run, s.last_attempt_at), ifNull(s.last_attempt_at, r.last_run)) AS last_seen
FROM run_failures AS r
FULL OUTER JOIN step_failures AS s ON s.error_code = r.error_code
ORDER BY failed_runs DESC, failed_attempts DESC, error_code
SETTINGS join_use_nulls = 1
