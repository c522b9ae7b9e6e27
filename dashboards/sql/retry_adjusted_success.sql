-- retry_adjusted_success: first-attempt vs eventual success of runs, per workflow.
--
-- A run succeeded at the first attempt when it finished success and none of its step
-- attempts failed; it succeeded eventually when it finished success (retries included).
-- The gap is what retries buy. Runs that finished success or failed count (stopped runs are
-- left out); window on the run's finish time. The last row (workflow_id '*') is the account.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    runs finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    runs finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   workflow_id                 the workflow ('*' = all workflows of the account)
--   workflow_name               its name
--   finished_runs               runs finished success or failed
--   first_attempt_successes     successes with no failed step attempt
--   eventual_successes          successes
--   saved_by_retry              successes that needed a retry
--   first_attempt_success_pct   first_attempt_successes / finished_runs, percent
--   eventual_success_pct        eventual_successes / finished_runs, percent
--   retry_gain_pct              the difference, percentage points
WITH
    finished AS (
        SELECT run_id, workflow_id, workflow_name, status, finished_at
        FROM runs
        WHERE account_id = {account:String} AND status IN ('success', 'failed')
          AND finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
    ),
    retried AS (
        SELECT run_id, countIf(status = 'failed') AS failed_attempts
        FROM steps
        WHERE account_id = {account:String} AND run_id IN (SELECT run_id FROM finished)
        GROUP BY run_id
    ),
    runs_ AS (
        SELECT f.workflow_id AS workflow_id, f.workflow_name AS workflow_name, f.finished_at AS finished_at,
               f.status = 'success' AS ok, f.status = 'success' AND ifNull(r.failed_attempts, 0) = 0 AS clean
        FROM finished AS f LEFT JOIN retried AS r ON r.run_id = f.run_id
    ),
    by_workflow AS (
        SELECT toString(workflow_id) AS workflow_id, argMax(workflow_name, finished_at) AS workflow_name,
               count() AS finished_runs, countIf(clean) AS first_attempt_successes,
               countIf(ok) AS eventual_successes, 0 AS is_total
        FROM runs_ GROUP BY workflow_id
        UNION ALL
        SELECT '*', 'all workflows', count(), countIf(clean), countIf(ok), 1 FROM runs_ HAVING count() > 0
    )
SELECT workflow_id, workflow_name, finished_runs, first_attempt_successes, eventual_successes,
       eventual_successes - first_attempt_successes AS saved_by_retry,
       round(100 * first_attempt_successes / nullIf(finished_runs, 0), 2) AS first_attempt_success_pct,
       round(100 * eventual_successes / nullIf(finished_runs, 0), 2) AS eventual_success_pct,
       round(eventual_success_pct - first_attempt_success_pct, 2) AS retry_gain_pct
FROM by_workflow
ORDER BY is_total, retry_gain_pct DESC, workflow_id
SETTINGS join_use_nulls = 1
