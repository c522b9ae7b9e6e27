-- top_failing_steps: the steps that fail most, with first-attempt vs eventual success.
--
-- One row per workflow step. A step's execution is one run reaching it (skipped steps are
-- left out); its attempts are that run's tries of the step. The step failed the run when
-- its last attempt failed; a retry recovered it when the first attempt failed and the last
-- succeeded. Window on the attempts' finish time.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    attempts finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    attempts finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
--   limit        UInt32                  most steps returned    [default: 20]
-- Columns:
--   workflow_id                 the workflow
--   workflow_name               its name
--   step_id                     the step (ids are per workflow)
--   step_name                   the step's name
--   step_type                   trigger, action, condition or delay
--   executions                  runs that executed the step
--   failed_attempts             failed attempts (retries included)
--   runs_failed_here            runs whose last attempt of the step failed
--   recovered_by_retry          runs whose first attempt failed and last attempt succeeded
--   failure_pct                 runs_failed_here / executions, percent
--   first_attempt_success_pct   executions whose first attempt succeeded, percent
--   eventual_success_pct        executions whose last attempt succeeded, percent
--   top_error_codes             most frequent error codes of the failed attempts
WITH
    per_run AS (
        SELECT s.workflow_id AS workflow_id, s.step_id AS step_id, s.run_id AS run_id,
               any(s.step_name) AS step_name, any(s.step_type) AS step_type,
               argMin(s.status, s.attempt) AS first_status, argMax(s.status, s.attempt) AS final_status,
               countIf(s.status = 'failed') AS failed_attempts,
               groupArrayIf(assumeNotNull(s.error_code), s.status = 'failed' AND s.error_code IS NOT NULL) AS codes
        FROM steps AS s
        WHERE s.account_id = {account:String} AND s.status IN ('success', 'failed')
          AND s.finished_at >= {since:DateTime64(3, 'UTC')} AND s.finished_at < {until:DateTime64(3, 'UTC')}
        GROUP BY s.workflow_id, s.step_id, s.run_id
    ),
    names AS (
        SELECT workflow_id, anyLast(workflow_name) AS workflow_name
        FROM runs WHERE account_id = {account:String} GROUP BY workflow_id
    )
SELECT
    p.workflow_id AS workflow_id, any(n.workflow_name) AS workflow_name, p.step_id AS step_id,
    any(p.step_name) AS step_name, any(p.step_type) AS step_type,
    count() AS executions,
    sum(p.failed_attempts) AS failed_attempts,
    countIf(p.final_status = 'failed') AS runs_failed_here,
    countIf(p.first_status = 'failed' AND p.final_status = 'success') AS recovered_by_retry,
    round(100 * runs_failed_here / executions, 2) AS failure_pct,
    round(100 * countIf(p.first_status = 'success') / executions, 2) AS first_attempt_success_pct,
    round(100 * countIf(p.final_status = 'success') / executions, 2) AS eventual_success_pct,
    topKArray(3)(p.codes) AS top_error_codes
FROM per_run AS p
LEFT JOIN names AS n ON n.workflow_id = p.workflow_id
WHERE {workflow:String} = '' OR p.workflow_id = {workflow:String} OR n.workflow_name = {workflow:String}
GROUP BY p.workflow_id, p.step_id
HAVING failed_attempts > 0
ORDER BY runs_failed_here DESC, failed_attempts DESC, workflow_id, step_id
LIMIT {limit:UInt32}
