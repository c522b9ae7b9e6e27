-- flaky_steps: steps whose outcome alternates for the same class of input.
--
-- A step's input class is its input JSON normalised like error messages (ids, numbers,
-- e-mail addresses, URLs and uuids replaced), so the same action on different contacts is
-- one class. Taking the attempts of each (workflow, step, input class) in time order, a flip
-- is an outcome different from the previous attempt's; a deterministic failure flips rarely,
-- a flaky one often. same_run_recoveries counts a failed attempt followed by a successful
-- retry of the same step in the same run: same input, different outcome, the clearest sign.
-- Window on the attempts' start time.
--
-- Parameters:
--   account        String                  the tenant (runlens sql: --account)
--   since          DateTime64(3, 'UTC')    attempts started at or after    [default: 1970-01-01]
--   until          DateTime64(3, 'UTC')    attempts started before         [default: 2100-01-01]
--   workflow       String                  only this workflow id, '' = all    [default: '']
--   min_failures   UInt32                  only classes with at least this many failures    [default: 2]
--   limit          UInt32                  most rows returned    [default: 50]
-- Columns:
--   workflow_id           the workflow
--   step_id               the step
--   step_name             its name
--   input_class           the normalised input
--   attempts              attempts that succeeded or failed
--   failures              failed attempts
--   successes             successful attempts
--   flips                 outcome changes between consecutive attempts
--   flip_rate             flips / (attempts - 1)
--   same_run_recoveries   failed attempts a retry in the same run recovered
--   failure_pct           failures / attempts, percent
--   error_codes           error codes of the failures
WITH
    attempts AS (
        SELECT s.workflow_id AS workflow_id, s.step_id AS step_id, s.step_name AS step_name,
               s.run_id AS run_id, s.attempt AS attempt, s.status AS status, s.error_code AS error_code,
               assumeNotNull(s.started_at) AS at,
               trimBoth(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(ifNull(s.input, ''), '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<uuid>'), '[A-Za-z][A-Za-z0-9+.-]*://[^\\s\'"<>()]+', '<url>'), '[A-Za-z0-9._%+-]+@[A-Za-z0-9.,@_-]*', '<email>'), '\\b[A-Za-z]+[_-][A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*', '<id>'), '\\b[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{4,})+\\b', '<id>'), '\\b[0-9a-fA-F]*(?:[0-9][0-9a-fA-F]*[a-fA-F]|[a-fA-F][0-9a-fA-F]*[0-9])[0-9a-fA-F]*\\b', '<id>'), '[0-9]+(?:\\.[0-9]+)?', '<n>'), '\\s+', ' ')) AS input_class
        FROM steps AS s
        WHERE s.account_id = {account:String} AND s.status IN ('success', 'failed')
          AND s.started_at >= {since:DateTime64(3, 'UTC')} AND s.started_at < {until:DateTime64(3, 'UTC')}
          AND ({workflow:String} = '' OR s.workflow_id = {workflow:String})
    ),
    sequenced AS (
        SELECT *,
               lagInFrame(status, 1, '') OVER w AS previous,
               leadInFrame(status, 1, '') OVER (PARTITION BY workflow_id, step_id, run_id ORDER BY attempt
                                               ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS next_in_run
        FROM attempts
        WINDOW w AS (PARTITION BY workflow_id, step_id, input_class ORDER BY at, run_id, attempt
                     ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    )
SELECT
    workflow_id, step_id, any(step_name) AS step_name, input_class,
    count() AS attempts,
    countIf(status = 'failed') AS failures,
    countIf(status = 'success') AS successes,
    countIf(previous != '' AND previous != status) AS flips,
    round(flips / greatest(attempts - 1, 1), 3) AS flip_rate,
    countIf(status = 'failed' AND next_in_run = 'success') AS same_run_recoveries,
    round(100 * failures / attempts, 2) AS failure_pct,
    arraySort(groupUniqArrayIf(assumeNotNull(error_code), error_code IS NOT NULL)) AS error_codes
FROM sequenced
GROUP BY workflow_id, step_id, input_class
HAVING failures >= {min_failures:UInt32} AND successes > 0
ORDER BY same_run_recoveries DESC, flip_rate DESC, failures DESC, workflow_id, step_id
LIMIT {limit:UInt32}
