-- failures_by_class: failed runs by the product's failure classes, with their top error codes.
--
-- The classes of the Workflow Runs page: configuration (config), data, external service
-- (external_service) and logic, plus internal (the engine's own failures). A run counts in
-- the class of the error it finished with. Window on the run's finish time.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    runs finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    runs finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   error_class       config, data, external_service, logic or internal ('' when unknown)
--   failure_class     the class as the product names it
--   failed_runs       runs that finished failed with this class
--   pct_of_failures   share of the window's failed runs
--   pct_of_finished   share of the window's finished runs
--   error_codes       distinct error codes seen
--   top_codes         the most frequent codes, most frequent first
--   workflows         affected workflows
--   first_failure     first failed run's finish time in the window
--   last_failure      last failed run's finish time in the window
WITH finished AS (
    SELECT status, error_class, error_code, workflow_id, finished_at
    FROM runs
    WHERE account_id = {account:String} AND status IN ('success', 'failed', 'stopped')
      AND finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')}
      AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
)
SELECT
    ifNull(error_class, '') AS error_class,
    transform(error_class, ['config', 'data', 'external_service', 'logic', 'internal'],
              ['configuration', 'data', 'external service', 'logic', 'internal'], 'unknown') AS failure_class,
    count() AS failed_runs,
    round(100 * failed_runs / (SELECT countIf(status = 'failed') FROM finished), 1) AS pct_of_failures,
    round(100 * failed_runs / (SELECT count() FROM finished), 2) AS pct_of_finished,
    uniqExact(error_code) AS error_codes,
    topK(5)(error_code) AS top_codes,
    arraySort(groupUniqArray(workflow_id)) AS workflows,
    min(finished_at) AS first_failure,
    max(finished_at) AS last_failure
FROM finished
WHERE status = 'failed'
GROUP BY error_class
ORDER BY failed_runs DESC, error_class
