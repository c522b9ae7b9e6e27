-- mttr_by_workflow: mean time to recovery per workflow (first failure -> next success).
--
-- A workflow's finished runs (success or failed; stopped runs are left out) are taken in
-- order of finish time. An incident opens at a failed run that follows a success (or starts
-- the window) and closes at the next successful run (a replay counts); its recovery time is
-- the time between the two finishes. Incidents still open at the end of the window are
-- counted but not averaged.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    runs finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    runs finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
-- Columns:
--   workflow_id        the workflow
--   workflow_name      its name
--   finished_runs      runs finished success or failed
--   failed_runs        of those, failed
--   incidents          failure streaks (incidents opened)
--   recovered          incidents closed by a success
--   open_incidents     incidents with no success yet
--   mttr_s             mean time to recovery, seconds
--   median_ttr_s       median time to recovery, seconds
--   longest_ttr_s      longest recovery, seconds
--   open_since         first failure of the open incident, if any
WITH
    finished AS (
        SELECT workflow_id, workflow_name, run_id, status, assumeNotNull(finished_at) AS at
        FROM runs
        WHERE account_id = {account:String} AND status IN ('success', 'failed')
          AND finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
    ),
    ordered AS (
        SELECT *,
               lagInFrame(status, 1, '') OVER (PARTITION BY workflow_id ORDER BY at, run_id
                                               ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS previous
        FROM finished
    ),
    marked AS (
        SELECT *, status = 'failed' AND previous != 'failed' AS opens,
               status = 'success' AND previous = 'failed' AS closes
        FROM ordered
    ),
    timed AS (
        SELECT *,
               max(if(opens, at, NULL)) OVER (PARTITION BY workflow_id ORDER BY at, run_id
                                               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS opened_at,
               argMax(status, (at, run_id)) OVER (PARTITION BY workflow_id) AS last_status
        FROM marked
    )
SELECT
    workflow_id,
    argMax(workflow_name, at) AS workflow_name,
    count() AS finished_runs,
    countIf(status = 'failed') AS failed_runs,
    countIf(opens) AS incidents,
    countIf(closes) AS recovered,
    incidents - recovered AS open_incidents,
    round(avgIf(dateDiff('millisecond', opened_at, at), closes) / 1000, 3) AS mttr_s,
    round(medianExactIf(dateDiff('millisecond', opened_at, at), closes) / 1000, 3) AS median_ttr_s,
    round(maxIf(dateDiff('millisecond', opened_at, at), closes) / 1000, 3) AS longest_ttr_s,
    if(any(last_status) = 'failed', max(opened_at), NULL) AS open_since
FROM timed
GROUP BY workflow_id
ORDER BY incidents = 0, mttr_s DESC, workflow_id
