-- failure_rate_by_hour_of_week: finished and failed runs per weekday and hour.
--
-- When do runs fail? One row per (weekday, hour) that saw a finished run, in the time zone
-- given (default UTC), by the run's finish time.
--
-- Parameters:
--   account      String                  the tenant (runlens sql: --account)
--   since        DateTime64(3, 'UTC')    runs finished at or after    [default: 1970-01-01]
--   until        DateTime64(3, 'UTC')    runs finished before         [default: 2100-01-01]
--   workflow     String                  only this workflow id or name, '' = all    [default: '']
--   tz           String                  IANA time zone of weekday and hour    [default: UTC]
-- Columns:
--   weekday        1 = Monday ... 7 = Sunday
--   day            Mon ... Sun
--   hour           0-23
--   finished       runs finished (success, failed or stopped)
--   failed         of those, failed
--   failure_pct    failed / finished, percent
WITH finished AS (
    SELECT status, finished_at
    FROM runs
    WHERE account_id = {account:String} AND status IN ('success', 'failed', 'stopped')
      AND finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')}
      AND ({workflow:String} = '' OR workflow_id = {workflow:String} OR workflow_name = {workflow:String})
)
SELECT
    toDayOfWeek(assumeNotNull(finished_at), 0, {tz:String}) AS weekday,
    ['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][weekday] AS day,
    toHour(assumeNotNull(finished_at), {tz:String}) AS hour,
    count() AS finished,
    countIf(status = 'failed') AS failed,
    round(100 * failed / finished, 2) AS failure_pct
FROM finished
GROUP BY weekday, hour
ORDER BY weekday, hour
