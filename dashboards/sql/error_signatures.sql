-- error_signatures: recurring step errors grouped by error code, step and normalised message.
--
-- Every failed step attempt of the account (retried attempts included) is reduced to a
-- signature: its error code, its step name and its message with uuids, URLs, e-mail
-- addresses, ids and numbers replaced by placeholders (rules: dashboards/sql/README.md).
-- Counts are for the window; first_seen, last_seen and first_version look at all retained
-- history, so "new since version N" means the signature never happened on an older version
-- of any workflow it affects. The trend compares the second half of the window's failure
-- span with the first half.
--
-- Parameters:
--   account            String                  the tenant (runlens sql: --account)
--   since              DateTime64(3, 'UTC')    failures finished at or after    [default: 1970-01-01]
--   until              DateTime64(3, 'UTC')    failures finished before         [default: 2100-01-01]
--   workflow           String                  only this workflow id or name, '' = all    [default: '']
--   new_since_version  UInt32                  only signatures first seen at this version or later,
--                                              0 = all    [default: 0]
--   limit              UInt32                  most signatures returned         [default: 100]
-- Columns:
--   signature          signature id: lower(hex(cityHash64(error_code, step_name, message)))
--   error_code         machine-readable error code
--   error_class        config, data, external_service, logic or internal
--   step_name          the step that failed
--   message            the normalised message
--   occurrences        failed attempts in the window
--   runs               distinct runs with such a failed attempt in the window
--   failed_runs        of those, runs that ended failed (the rest recovered by a retry or were stopped)
--   first_seen         first occurrence in retained history
--   last_seen          last occurrence in retained history
--   earlier            occurrences in the first half of the window's failure span
--   recent             occurrences in the second half
--   trend              new, rising, falling or steady (recent vs earlier, 1.5x either way)
--   workflows          affected workflow ids
--   versions           affected "workflow_id vN" pairs
--   triggers           affected triggers
--   sites              affected site names (or ids)
--   first_version      lowest workflow version the signature was ever seen on
--   sample_run_id      the latest run with this signature
--   sample_message     its message as written
WITH
    failures AS (
        SELECT
            s.run_id AS run_id, s.workflow_id AS workflow_id, s.step_name AS step_name,
            s.error_code AS error_code, s.error_class AS error_class, s.error_message AS error_message,
            s.finished_at AS finished_at, r.workflow_version AS workflow_version, r.trigger AS trigger,
            coalesce(r.site_name, r.site_id) AS site, r.status AS run_status,
            trimBoth(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(replaceRegexpAll(ifNull(s.error_message, ''), '[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}', '<uuid>'), '[A-Za-z][A-Za-z0-9+.-]*://[^\\s\'"<>()]+', '<url>'), '[A-Za-z0-9._%+-]+@[A-Za-z0-9.,@_-]*', '<email>'), '\\b[A-Za-z]+[_-][A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*', '<id>'), '\\b[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{4,})+\\b', '<id>'), '\\b[0-9a-fA-F]*(?:[0-9][0-9a-fA-F]*[a-fA-F]|[a-fA-F][0-9a-fA-F]*[0-9])[0-9a-fA-F]*\\b', '<id>'), '[0-9]+(?:\\.[0-9]+)?', '<n>'), '\\s+', ' ')) AS message,
            finished_at >= {since:DateTime64(3, 'UTC')} AND finished_at < {until:DateTime64(3, 'UTC')} AS in_window
        FROM steps AS s
        INNER JOIN
        (
            SELECT run_id, workflow_name, workflow_version, trigger, site_id, site_name, status
            FROM runs WHERE account_id = {account:String}
        ) AS r ON r.run_id = s.run_id
        WHERE s.account_id = {account:String} AND s.status = 'failed'
          AND ({workflow:String} = '' OR s.workflow_id = {workflow:String} OR r.workflow_name = {workflow:String})
    ),
    span AS (
        SELECT min(finished_at) AS lo, max(finished_at) AS hi,
               lo + toIntervalMillisecond(intDiv(dateDiff('millisecond', lo, hi), 2)) AS mid
        FROM failures WHERE in_window
    )
SELECT
    lower(hex(cityHash64(ifNull(error_code, ''), ifNull(step_name, ''), message))) AS signature,
    error_code, any(error_class) AS error_class, step_name, message,
    countIf(in_window) AS occurrences,
    uniqExactIf(run_id, in_window) AS runs,
    uniqExactIf(run_id, in_window AND run_status = 'failed') AS failed_runs,
    min(finished_at) AS first_seen,
    max(finished_at) AS last_seen,
    countIf(in_window AND finished_at < (SELECT mid FROM span)) AS earlier,
    countIf(in_window AND finished_at >= (SELECT mid FROM span)) AS recent,
    multiIf(earlier = 0, 'new', recent >= 1.5 * earlier, 'rising', recent * 1.5 <= earlier, 'falling', 'steady') AS trend,
    arraySort(groupUniqArrayIf(workflow_id, in_window)) AS workflows,
    arraySort(groupUniqArrayIf(concat(workflow_id, ' v', toString(workflow_version)), in_window)) AS versions,
    arraySort(groupUniqArrayIf(trigger, in_window)) AS triggers,
    arraySort(groupUniqArrayIf(site, in_window AND site IS NOT NULL)) AS sites,
    min(workflow_version) AS first_version,
    argMaxIf(run_id, (finished_at, run_id), in_window) AS sample_run_id,
    argMaxIf(error_message, (finished_at, run_id), in_window) AS sample_message
FROM failures
GROUP BY error_code, step_name, message
HAVING occurrences > 0 AND first_version >= {new_since_version:UInt32}
ORDER BY occurrences DESC, signature
LIMIT {limit:UInt32}
