"""The facts query of ``dashboards.attention``: for every workflow of one account, what the
reasons need from the aggregate tables (``run_stats_*``, ``step_stats_*``, ``run_notes``) and,
for stuck runs, the account's open runs of the lookback. In two dialects: bound parameters (the
CLI, the report) or the Grafana plugin's macros and variables (the overview panel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from dashboards.attention_rules import (
    BASELINE_MAX,
    BASELINE_WINDOWS,
    NEW_ERRORS_MIN_HITS,
    SIGNATURE_LOOKBACK,
    STUCK_MIN_MS,
    STUCK_NO_P99_MS,
    STUCK_P99_FACTOR,
)
from dashboards.runs import Query, QueryError


@dataclass(frozen=True)
class Dialect:
    """How the facts query names its inputs: bound parameters (the CLI, the report) or the
    Grafana plugin's macros and variables (the panel)."""

    account: str        # condition on account_id (every scan carries it)
    workflow: str       # condition on workflow_id ("1": all)
    since: str
    until: str
    base_since: str
    sig_since: str
    open_runs: bool = True   # read open runs (run_state, by key) for stuck runs; the panel does not


BOUND = Dialect(
    account="account_id = {account:String}",
    workflow="1",
    since="{since:DateTime64(3, 'UTC')}",
    until="{until:DateTime64(3, 'UTC')}",
    base_since="{base_since:DateTime64(3, 'UTC')}",
    sig_since="{sig_since:DateTime64(3, 'UTC')}",
)


def grafana_dialect(account: str, workflow: str, open_runs: bool = True) -> Dialect:
    """The dashboards' dialect: ``account`` / ``workflow`` are the dashboard's variable filters.
    The overview panel passes ``open_runs=False``: a panel refreshed every minute reads no per-run
    table (stuck runs are ``runlens attention``'s, the report's and the Stuck runs alert's)."""
    window = "dateDiff('second', $__fromTime, $__toTime)"
    return Dialect(
        account=account, workflow=workflow, since="$__fromTime", until="$__toTime",
        base_since=f"($__fromTime - toIntervalSecond(least({BASELINE_WINDOWS} * {window}, "
                   f"{int(BASELINE_MAX.total_seconds())})))",
        sig_since=f"($__fromTime - toIntervalSecond({int(SIGNATURE_LOOKBACK.total_seconds())}))",
        open_runs=open_runs,
    )


FACT_COLUMNS = (
    "account_id", "workflow_id", "workflow_name", "runs", "failed", "base_runs", "base_failed",
    "current_version", "current_runs", "current_failed", "current_p95_ms",
    "previous_version", "previous_runs", "previous_failed", "previous_p95_ms",
    "p99_ms", "lookback_runs", "active_hours", "longest_gap_s", "last_finish", "as_of", "silence_s",
    "queue_samples", "queue_p95_ms", "base_queue_samples", "base_queue_p95_ms",
    "new_signatures", "new_signature_failures", "new_signature_examples",
    "replays_finished", "replays_failed",
    "delays", "delays_late", "lateness_avg_ms", "lateness_max_ms",
    "stuck_runs", "stuck_oldest_ms",
)


def _rollup(d: Dialect, minute_table: str, hourly_table: str, columns: str, ranges: Sequence[tuple[str, str]],
            ) -> str:
    """Rows of ``[ranges]`` (each a ``(from, until)`` pair): hours wholly inside one range from the
    hourly table, the remaining minutes from the minute table (same sums and digests).
    ``bucket_end`` is the end of the row's period."""
    def whole(column: str) -> str:
        return "(" + " OR ".join(f"({column} >= {lo} AND {column} + INTERVAL 3540 SECOND < {hi})"
                                 for lo, hi in ranges) + ")"
    lo, hi = ranges[0][0], ranges[-1][1]
    scope = f"{d.account} AND {d.workflow}"
    return (f"(SELECT {columns}, bucket + INTERVAL 3600 SECOND AS bucket_end FROM {hourly_table} "
            f"WHERE {scope} AND {whole('bucket')} "
            f"UNION ALL SELECT {columns}, bucket + INTERVAL 60 SECOND AS bucket_end FROM {minute_table} "
            f"WHERE {scope} AND bucket >= {lo} AND bucket < {hi} AND NOT {whole('toStartOfHour(bucket)')})")


def facts_sql(d: Dialect) -> str:
    """One row per workflow (``FACT_COLUMNS``) with runs in the window or its baseline."""
    run_cols = ("account_id, workflow_id, workflow_version, bucket, workflow_name, finished, failed, "
                "duration_digest, queue_samples, queue_wait_digest")
    runs = _rollup(d, "run_stats_state", "run_stats_hourly", run_cols,
                   [(d.base_since, d.since), (d.since, d.until)])
    step_cols = "account_id, workflow_id, bucket, delays, delays_late, lateness_sum_ms, lateness_max_ms"
    steps = _rollup(d, "step_stats_state", "step_stats_hourly", step_cols, [(d.since, d.until)])
    sql = f"""
WITH
{_ctes(d, runs, steps)}
SELECT {_SELECT}
FROM wf AS w
LEFT JOIN versions AS v ON v.account_id = w.account_id AND v.workflow_id = w.workflow_id
LEFT JOIN clock AS c ON c.account_id = w.account_id
LEFT JOIN new_sigs AS ns ON ns.account_id = w.account_id AND ns.workflow_id = w.workflow_id
LEFT JOIN replays AS rp ON rp.account_id = w.account_id AND rp.workflow_id = w.workflow_id
LEFT JOIN delays AS dl ON dl.account_id = w.account_id AND dl.workflow_id = w.workflow_id
LEFT JOIN stuck AS st ON st.account_id = w.account_id AND st.workflow_id = w.workflow_id
WHERE w.lookback_runs > 0"""
    return sql.strip()


def _stuck(d: Dialect) -> str:
    """Stuck runs per workflow: runs started in the lookback, not finished by ``until``, running
    for longer than max(5 min, 5 x p99). The account's run_state rows of the lookback only (a
    filter before the GROUP BY), then the open runs' workflow by key."""
    if not d.open_runs:
        return (" stuck AS (SELECT account_id, workflow_id, toUInt64(0) AS stuck_runs, toInt64(0) AS stuck_oldest_ms "
                "FROM wf WHERE 0)")
    return f""" open_runs AS (
  SELECT account_id, run_id FROM run_state
  WHERE {d.account} AND (started_ts >= {d.base_since} OR finished_at >= {d.base_since})
  GROUP BY account_id, run_id
  HAVING (max(finished_at) IS NULL OR max(finished_at) >= {d.until})
     AND min(started_ts) >= {d.base_since} AND min(started_ts) < {d.until} - INTERVAL {STUCK_MIN_MS // 1000} SECOND),
 open_by_workflow AS (
  SELECT account_id, tupleElement(argMaxMerge(context), 'workflow_id') AS workflow_id, min(started_ts) AS started
  FROM run_state WHERE {d.account} AND (account_id, run_id) IN (SELECT account_id, run_id FROM open_runs)
  GROUP BY account_id, run_id),
 stuck AS (
  SELECT o.account_id AS account_id, o.workflow_id AS workflow_id,
         count() AS stuck_runs, max(dateDiff('millisecond', o.started, c.as_of)) AS stuck_oldest_ms
  FROM open_by_workflow AS o
  INNER JOIN wf AS w ON w.account_id = o.account_id AND w.workflow_id = o.workflow_id
  INNER JOIN clock AS c ON c.account_id = o.account_id
  WHERE dateDiff('millisecond', o.started, c.as_of)
        > if(isFinite(w.p99_ms), greatest({STUCK_MIN_MS}, {STUCK_P99_FACTOR} * w.p99_ms), {STUCK_NO_P99_MS})
  GROUP BY account_id, workflow_id)"""


def _ctes(d: Dialect, runs: str, steps: str) -> str:
    return f"""
 rs AS (SELECT *, bucket >= {d.since} AS in_window FROM {runs}),
 by_version AS (
  SELECT account_id, workflow_id, workflow_version, sum(finished) AS n, sum(failed) AS bad,
         quantilesTDigestMerge(0.95)(duration_digest)[1] AS p95
  FROM rs GROUP BY account_id, workflow_id, workflow_version HAVING n > 0),
 versions AS (
  SELECT account_id, workflow_id,
         arrayReverseSort(x -> x.1, groupArray((workflow_version, n, bad, p95))) AS vs
  FROM by_version GROUP BY account_id, workflow_id),
 wf AS (
  SELECT account_id, workflow_id, argMax(toString(workflow_name), bucket) AS workflow_name,
         sumIf(finished, in_window) AS runs_w, sumIf(failed, in_window) AS failed_w,
         sumIf(finished, NOT in_window) AS base_runs, sumIf(failed, NOT in_window) AS base_failed,
         quantilesTDigestMerge(0.99)(duration_digest)[1] AS p99_ms,
         sum(finished) AS lookback_runs,
         arraySort(groupUniqArrayIf(toStartOfHour(bucket), finished > 0)) AS hours,
         length(hours) AS active_hours,
         if(active_hours < 2, 0, arrayMax(arrayDifference(arrayMap(h -> toInt64(toUnixTimestamp(h)), hours))))
             AS longest_gap_s,
         maxIf(bucket_end, finished > 0) AS last_finish,
         sumIf(queue_samples, in_window) AS queue_w,
         quantilesTDigestMergeIf(0.95)(queue_wait_digest, in_window)[1] AS queue_p95_ms,
         sumIf(queue_samples, NOT in_window) AS queue_b,
         quantilesTDigestMergeIf(0.95)(queue_wait_digest, NOT in_window)[1] AS base_queue_p95_ms
  FROM rs GROUP BY account_id, workflow_id),
 clock AS (
  SELECT account_id, least(toDateTime64({d.until}, 3, 'UTC'), toDateTime64(max(last_finish), 3, 'UTC')) AS as_of
  FROM wf WHERE lookback_runs > 0 GROUP BY account_id),
 sigs AS (
  SELECT account_id, workflow_id, ifNull(error_code, '') AS code, ifNull(step_name, '') AS step,
         min(ts) AS first_seen, countIf(ts >= {d.since}) AS hits
  FROM run_notes FINAL
  WHERE scope = 'step' AND {d.account} AND {d.workflow} AND ts >= {d.sig_since} AND ts < {d.until}
  GROUP BY account_id, workflow_id, code, step),
 new_sigs AS (
  SELECT account_id, workflow_id, count() AS new_signatures, sum(hits) AS new_signature_failures,
         arraySlice(arraySort(groupArray(concat(code, ' at ', step))), 1, 3) AS new_signature_examples
  FROM sigs WHERE first_seen >= {d.since} AND hits >= {NEW_ERRORS_MIN_HITS}
  GROUP BY account_id, workflow_id),
 replays AS (
  SELECT account_id, workflow_id, count() AS replays_finished, countIf(status = 'failed') AS replays_failed
  FROM run_notes FINAL
  WHERE scope = 'replay' AND step_id = 'run.finished' AND {d.account} AND {d.workflow}
    AND ts >= {d.since} AND ts < {d.until}
  GROUP BY account_id, workflow_id),
 delays AS (
  SELECT account_id, workflow_id, sum(delays) AS delays, sum(delays_late) AS delays_late,
         if(delays_late = 0, 0, sum(lateness_sum_ms) / delays_late) AS lateness_avg_ms,
         max(lateness_max_ms) AS lateness_max_ms
  FROM {steps} GROUP BY account_id, workflow_id),
{_stuck(d)}"""


_SELECT = """w.account_id AS account_id, w.workflow_id AS workflow_id, w.workflow_name AS workflow_name,
       w.runs_w AS runs, w.failed_w AS failed, w.base_runs AS base_runs, w.base_failed AS base_failed,
       if(length(v.vs) >= 1, v.vs[1].1, 0) AS current_version, if(length(v.vs) >= 1, v.vs[1].2, 0) AS current_runs,
       if(length(v.vs) >= 1, v.vs[1].3, 0) AS current_failed, if(length(v.vs) >= 1, v.vs[1].4, nan) AS current_p95_ms,
       if(length(v.vs) >= 2, v.vs[2].1, 0) AS previous_version, if(length(v.vs) >= 2, v.vs[2].2, 0) AS previous_runs,
       if(length(v.vs) >= 2, v.vs[2].3, 0) AS previous_failed, if(length(v.vs) >= 2, v.vs[2].4, nan) AS previous_p95_ms,
       w.p99_ms AS p99_ms, w.lookback_runs AS lookback_runs, w.active_hours AS active_hours,
       w.longest_gap_s AS longest_gap_s, w.last_finish AS last_finish, c.as_of AS as_of,
       greatest(0, dateDiff('second', w.last_finish, c.as_of)) AS silence_s,
       w.queue_w AS queue_samples, w.queue_p95_ms AS queue_p95_ms,
       w.queue_b AS base_queue_samples, w.base_queue_p95_ms AS base_queue_p95_ms,
       ns.new_signatures AS new_signatures, ns.new_signature_failures AS new_signature_failures,
       ns.new_signature_examples AS new_signature_examples,
       rp.replays_finished AS replays_finished, rp.replays_failed AS replays_failed,
       dl.delays AS delays, dl.delays_late AS delays_late, dl.lateness_avg_ms AS lateness_avg_ms,
       dl.lateness_max_ms AS lateness_max_ms,
       st.stuck_runs AS stuck_runs, st.stuck_oldest_ms AS stuck_oldest_ms"""


def baseline_start(since: datetime, until: datetime) -> datetime:
    """The baseline's start: ``min(4 x window, 28 days)`` before ``since``."""
    return since - min(BASELINE_WINDOWS * (until - since), BASELINE_MAX)


def facts(account: str, since: datetime, until: datetime) -> Query:
    """The facts of every workflow of ``account`` for the window ``[since, until)``."""
    if not isinstance(account, str) or not account.strip():
        raise QueryError("--account: an account is required (every query reads one account)")
    if since >= until:
        raise QueryError("the window is empty: --since must be before --until")
    params = {"account": account, "since": since, "until": until, "base_since": baseline_start(since, until),
              "sig_since": since - SIGNATURE_LOOKBACK}
    return Query(facts_sql(BOUND), params, FACT_COLUMNS)
