"""Workflows needing attention: per-workflow facts as SQL, and a pure score over them.

One query (``facts``) reads, for every workflow of one account, what the reasons below need from
the aggregate tables (``run_stats_hourly`` + the ragged minutes of ``run_stats_state``, the same
for ``step_stats_*``, and ``run_notes``), plus, for stuck runs, the account's ``run_state`` rows
of the lookback (filtered before their GROUP BY) and the open runs' workflow by key: never a fold
of every run ever stored. ``score(facts)`` turns one row into reasons, each with its numbers,
points and the command or dashboard to drill in. The overview panel runs the same facts with the
dashboard's macros (``grafana_dialect``, without open runs) and the same rules written in SQL
(``panel_sql``); an integration test checks that both give the same scores.

Windows. The window is ``[since, until)``; the baseline is the ``min(4 x window, 28 days)``
before it; error signatures look back 30 days before the window. "Now" for silence and stuck
runs is the account's own clock: ``as_of = min(until, the end of the account's last minute
with a finished run)``, so a workload replayed from the past is not "silent" today.

Reasons, when each fires, and its points (the score is their sum; a workflow is listed when
it has at least one reason):

====================  ====================================================  =========================================
reason                fires when                                            points
====================  ====================================================  =========================================
``failure_rate``      >= 10 finished runs and >= 3 failed in the window;     100 x (rate - baseline): one point per
                      rate >= 2 x baseline and >= baseline + 5 pp and        percentage point above the baseline
                      z = (failed - runs x b) / sqrt(runs x b x (1 - b))
                      >= 3; baseline b = (failed + 1) / (finished + 20)
                      before the window (5 % when there is no history)
``new_errors``        >= 20 runs in the baseline; error signatures           10 x min(new signatures, 5)
                      (error code + step) first seen in the window, not in
                      the 30 days before, with >= 2 failed attempts in all
``version_regression`` the latest version and the one before, >= 10 runs     20 x min(p95 ratio - 1, 4) if the ratio is
                      each over window + baseline: p95 duration >= 1.5 x,    >= 1.5, + 100 x failure rate increase if
                      or failure rate >= +10 pp with >= 3 failures           >= 10 pp
``silent``            >= 20 runs in window + baseline over >= 12 hours with  10 x min(silence / max(longest gap, 1 h),
                      runs; no finished run for >= max(3 h, 2 x the           4)
                      longest gap between its active hours before)
``stuck_runs``        runs started in window + baseline, not finished,       5 x min(stuck runs, 10)
                      running for > max(5 min, 5 x the workflow's p99)
                      (1 h without a p99)
``queue_growing``     >= 10 queue waits in window and baseline; queue wait   5 x min(ratio, 8), ratio = p95 /
                      p95 >= 3 x max(the baseline's p95, 60 s)               max(baseline p95, 60 s)
``late_delays``       >= 5 delay steps resumed in the window; >= 20 % of     0.3 x late share in percent
                      them late (> 1 s) by 60 s or more on average
``replays_failing``   >= 2 replays finished failed in the window, at least   5 x min(failed replays, 6)
                      half of the replays that finished
====================  ====================================================  =========================================

Every query is scoped to one account (``{account:String}``; in the dashboards, the account variable) with
every value bound.
Crash/retry: read-only; the same window on the same data gives the same answer.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from dashboards.runs import Query, QueryError

# --------------------------------------------------------------------------- rules (constants)

BASELINE_WINDOWS = 4
BASELINE_MAX = timedelta(days=28)
SIGNATURE_LOOKBACK = timedelta(days=30)

MIN_RUNS = 10
MIN_FAILED = 3
PRIOR_FAILED, PRIOR_RUNS = 1, 20           # baseline prior: 5 %
FAILURE_RATIO, FAILURE_EXCESS, FAILURE_Z = 2.0, 0.05, 3.0
FAILURE_POINTS = 100.0                     # per unit of rate above baseline (1 per pp)

NEW_ERRORS_HISTORY = 20
NEW_ERRORS_MIN_HITS = 2
NEW_ERRORS_POINTS, NEW_ERRORS_CAP = 10.0, 5

VERSION_MIN_RUNS = 10
SLOWDOWN_RATIO = 1.5
SLOWDOWN_POINTS, SLOWDOWN_CAP = 20.0, 4.0
VERSION_FAILURE_EXCESS = 0.10

SILENT_MIN_RUNS, SILENT_MIN_HOURS = 20, 12
SILENT_MIN_SECONDS = 3 * 3600
SILENT_GAP_FACTOR = 2.0
SILENT_POINTS, SILENT_CAP = 10.0, 4.0

STUCK_MIN_MS, STUCK_P99_FACTOR, STUCK_NO_P99_MS = 300_000, 5, 3_600_000
STUCK_POINTS, STUCK_CAP = 5.0, 10

QUEUE_MIN_SAMPLES = 10
QUEUE_MIN_P95_MS = 60_000
QUEUE_RATIO = 3.0
QUEUE_POINTS, QUEUE_CAP = 5.0, 8.0

DELAYS_MIN = 5
DELAYS_LATE_SHARE = 0.20
DELAYS_LATE_AVG_MS = 60_000
DELAYS_POINTS = 0.3                        # per percent of delays late

REPLAYS_MIN_FAILED = 2
REPLAYS_FAILED_SHARE = 0.5
REPLAYS_POINTS, REPLAYS_CAP = 5.0, 6

REASONS = ("failure_rate", "new_errors", "version_regression", "silent", "stuck_runs", "queue_growing",
           "late_delays", "replays_failing")
MAX_LIMIT = 1000

# Grafana dashboards to drill into (uids of dashboards/definitions/).
FAILURES_DASHBOARD = "/d/runlens-failures"
WORKFLOW_DASHBOARD = "/d/runlens-workflow"
QUEUE_DASHBOARD = "/d/runlens-queue"
RUNS_DASHBOARD = "/d/runlens-runs"


# --------------------------------------------------------------------------- the facts query


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


# --------------------------------------------------------------------------- scoring (pure)


@dataclass(frozen=True)
class Reason:
    kind: str
    points: float
    summary: str
    numbers: dict[str, Any]
    drill: tuple[str, ...]      # runlens commands and Grafana dashboard paths


@dataclass(frozen=True)
class Assessment:
    account_id: str
    workflow_id: str
    workflow_name: str
    score: float
    reasons: tuple[Reason, ...] = field(default_factory=tuple)


def _num(value: Any) -> float:
    """A number from the warehouse: NULL and NaN (an empty digest) are 0."""
    if value is None:
        return 0.0
    number = float(value)
    return 0.0 if math.isnan(number) or math.isinf(number) else number


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else number


def _pct(value: float) -> float:
    return round(100 * value, 1)


@dataclass(frozen=True)
class Window:
    """The window the facts were read for (drill-ins repeat it)."""

    since: datetime
    until: datetime

    def text(self) -> str:
        return f"--since {_iso(self.since)} --until {_iso(self.until)}"

    def grafana(self) -> str:
        return f"from={_ms(self.since)}&to={_ms(self.until)}"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _cmd(*parts: str) -> str:
    return " ".join(shlex.quote(p) for p in parts)


def _grafana(path: str, account: str, window: Window, workflow: str | None = None, status: str | None = None) -> str:
    q = f"var-account={quote(account, safe='')}"
    if workflow is not None:
        q += f"&var-workflow={quote(workflow, safe='')}"
    if status is not None:
        q += f"&var-status={status}"
    return f"{path}?{q}&{window.grafana()}"


def failure_baseline(base_failed: float, base_runs: float) -> float:
    """The baseline failure rate, smoothed by a prior of 1 failure in 20 runs."""
    return (base_failed + PRIOR_FAILED) / (base_runs + PRIOR_RUNS)


def reasons_of(f: Mapping[str, Any], window: Window) -> list[Reason]:
    """The reasons of one workflow's facts (a row of ``facts``), strongest rule first."""
    account, wf = str(f["account_id"]), str(f["workflow_id"])
    since_until = window.text().split()
    runs_cmd = ("runlens", "runs", "list", "--account", account, "--workflow", wf)
    found: list[Reason] = []

    runs, failed = _num(f.get("runs")), _num(f.get("failed"))
    base = failure_baseline(_num(f.get("base_failed")), _num(f.get("base_runs")))
    if runs >= MIN_RUNS and failed >= MIN_FAILED:
        rate = failed / runs
        z = (failed - runs * base) / math.sqrt(runs * base * (1 - base))
        if rate >= FAILURE_RATIO * base and rate - base >= FAILURE_EXCESS and z >= FAILURE_Z:
            found.append(Reason(
                "failure_rate", FAILURE_POINTS * (rate - base),
                f"failure rate {_pct(rate)}% ({int(failed)} of {int(runs)} runs) vs baseline {_pct(base)}%",
                {"failure_pct": _pct(rate), "baseline_pct": _pct(base), "failed": int(failed), "runs": int(runs),
                 "baseline_runs": int(_num(f.get("base_runs"))), "z": round(z, 1)},
                (_cmd(*runs_cmd, "--status", "failed", *since_until),
                 _grafana(FAILURES_DASHBOARD, account, window, wf))))

    new, hits = int(_num(f.get("new_signatures"))), int(_num(f.get("new_signature_failures")))
    if new >= 1 and _num(f.get("base_runs")) >= NEW_ERRORS_HISTORY:
        examples = [str(e) for e in (f.get("new_signature_examples") or [])]
        found.append(Reason(
            "new_errors", NEW_ERRORS_POINTS * min(new, NEW_ERRORS_CAP),
            f"{new} new error signature{'s' if new != 1 else ''} ({hits} failed attempts): {', '.join(examples)}",
            {"new_signatures": new, "failed_attempts": hits, "examples": examples},
            (_cmd("runlens", "sql", "error_signatures", "--account", account, "-p", f"workflow={wf}",
                  "-p", f"since={_iso(window.since)}", "-p", f"until={_iso(window.until)}"),
             _grafana(FAILURES_DASHBOARD, account, window, wf))))

    cur_runs, prev_runs = _num(f.get("current_runs")), _num(f.get("previous_runs"))
    if cur_runs >= VERSION_MIN_RUNS and prev_runs >= VERSION_MIN_RUNS:
        cur_p95, prev_p95 = _finite(f.get("current_p95_ms")), _finite(f.get("previous_p95_ms"))
        ratio = cur_p95 / prev_p95 if cur_p95 is not None and prev_p95 else None
        cur_failed = _num(f.get("current_failed"))
        cur_rate, prev_rate = cur_failed / cur_runs, _num(f.get("previous_failed")) / prev_runs
        points, parts = 0.0, []
        if ratio is not None and ratio >= SLOWDOWN_RATIO:
            points += SLOWDOWN_POINTS * min(ratio - 1, SLOWDOWN_CAP)
            parts.append(f"p95 {ratio:.2f}x")
        if cur_failed >= MIN_FAILED and cur_rate - prev_rate >= VERSION_FAILURE_EXCESS:
            points += FAILURE_POINTS * (cur_rate - prev_rate)
            parts.append(f"failure rate {_pct(cur_rate)}% vs {_pct(prev_rate)}%")
        if points > 0:
            cv, pv = int(_num(f.get("current_version"))), int(_num(f.get("previous_version")))
            found.append(Reason(
                "version_regression", points, f"v{cv} against v{pv}: {', '.join(parts)}",
                {"version": cv, "previous_version": pv, "p95_ratio": None if ratio is None else round(ratio, 2),
                 "p95_ms": cur_p95, "previous_p95_ms": prev_p95, "failure_pct": _pct(cur_rate),
                 "previous_failure_pct": _pct(prev_rate), "runs": int(cur_runs), "previous_runs": int(prev_runs)},
                (_cmd("runlens", "stats", "bottlenecks", "--account", account, "--workflow", wf),
                 _grafana(WORKFLOW_DASHBOARD, account, window, wf))))

    silence, longest = _num(f.get("silence_s")), _num(f.get("longest_gap_s"))
    if (_num(f.get("lookback_runs")) >= SILENT_MIN_RUNS and _num(f.get("active_hours")) >= SILENT_MIN_HOURS
            and silence >= max(SILENT_MIN_SECONDS, SILENT_GAP_FACTOR * longest)):
        usual = max(longest, 3600.0)
        found.append(Reason(
            "silent", SILENT_POINTS * min(silence / usual, SILENT_CAP),
            f"no finished run for {silence / 3600:.1f} h (longest gap before: {longest / 3600:.1f} h)",
            {"silence_h": round(silence / 3600, 1), "longest_gap_h": round(longest / 3600, 1),
             "runs": int(_num(f.get("lookback_runs")))},
            (_cmd(*runs_cmd, "--limit", "5"), _grafana(RUNS_DASHBOARD, account, window, wf))))

    stuck = int(_num(f.get("stuck_runs")))
    if stuck >= 1:
        p99 = _finite(f.get("p99_ms"))
        found.append(Reason(
            "stuck_runs", STUCK_POINTS * min(stuck, STUCK_CAP),
            f"{stuck} run{'s' if stuck != 1 else ''} still running, the oldest for "
            f"{_num(f.get('stuck_oldest_ms')) / 60_000:.0f} min (p99 {'-' if p99 is None else f'{p99 / 1000:.0f} s'})",
            {"stuck_runs": stuck, "oldest_min": round(_num(f.get("stuck_oldest_ms")) / 60_000, 1),
             "p99_ms": p99},
            (_cmd(*runs_cmd, "--status", "running", "--sort", "started_at:asc"),
             _grafana(RUNS_DASHBOARD, account, window, wf, "running"))))

    q, bq = _finite(f.get("queue_p95_ms")), _finite(f.get("base_queue_p95_ms"))
    if (_num(f.get("queue_samples")) >= QUEUE_MIN_SAMPLES and _num(f.get("base_queue_samples")) >= QUEUE_MIN_SAMPLES
            and q is not None and bq is not None and q >= QUEUE_RATIO * max(bq, QUEUE_MIN_P95_MS)):
        ratio = q / max(bq, QUEUE_MIN_P95_MS)
        found.append(Reason(
            "queue_growing", QUEUE_POINTS * min(ratio, QUEUE_CAP),
            f"queue wait p95 {q / 1000:.0f} s vs {bq / 1000:.0f} s before ({ratio:.1f}x)",
            {"queue_p95_s": round(q / 1000, 1), "baseline_queue_p95_s": round(bq / 1000, 1),
             "ratio": round(ratio, 2)},
            (_cmd("runlens", "stats", "queue", "--account", account, "--by", "hour", *since_until),
             _grafana(QUEUE_DASHBOARD, account, window))))

    delays, late, late_avg = _num(f.get("delays")), _num(f.get("delays_late")), _num(f.get("lateness_avg_ms"))
    if delays >= DELAYS_MIN and late / delays >= DELAYS_LATE_SHARE and late_avg >= DELAYS_LATE_AVG_MS:
        share = late / delays
        found.append(Reason(
            "late_delays", DELAYS_POINTS * 100 * share,
            f"{int(late)} of {int(delays)} delays resumed late ({_pct(share)}%), by {late_avg / 1000:.0f} s on "
            f"average (at most {_num(f.get('lateness_max_ms')) / 1000:.0f} s)",
            {"delays": int(delays), "late": int(late), "late_pct": _pct(share),
             "late_avg_s": round(late_avg / 1000, 1), "late_max_s": round(_num(f.get("lateness_max_ms")) / 1000, 1)},
            (_cmd("runlens", "stats", "bottlenecks", "--account", account, "--workflow", wf),
             _grafana(WORKFLOW_DASHBOARD, account, window, wf))))

    r_done, r_failed = _num(f.get("replays_finished")), _num(f.get("replays_failed"))
    if r_failed >= REPLAYS_MIN_FAILED and r_failed >= REPLAYS_FAILED_SHARE * r_done:
        found.append(Reason(
            "replays_failing", REPLAYS_POINTS * min(r_failed, REPLAYS_CAP),
            f"{int(r_failed)} of {int(r_done)} replays failed again",
            {"replays": int(r_done), "failed": int(r_failed)},
            (_cmd("runlens", "runs", "replays", "--account", account, "--workflow", wf, "--pairs", *since_until),
             _grafana(FAILURES_DASHBOARD, account, window, wf))))
    return found


def score(f: Mapping[str, Any], window: Window) -> Assessment:
    """One workflow's reasons and its score (the sum of their points, rounded to 0.1)."""
    found = reasons_of(f, window)
    return Assessment(str(f["account_id"]), str(f["workflow_id"]), str(f.get("workflow_name") or ""),
                      round(sum(r.points for r in found), 1), tuple(found))


def rank(rows: Sequence[Mapping[str, Any]], window: Window, limit: int | None = None) -> list[Assessment]:
    """Workflows with at least one reason, highest score first (ties by workflow id)."""
    assessed = [a for a in (score(r, window) for r in rows) if a.reasons]
    assessed.sort(key=lambda a: (-a.score, a.account_id, a.workflow_id))
    return assessed[:limit] if limit is not None else assessed


# --------------------------------------------------------------------------- the panel (same rules in SQL)


def _points_sql() -> list[tuple[str, str, str]]:
    """(kind, points expression, reason text expression) over the facts' columns; 0 points = no reason."""
    base = f"((base_failed + {PRIOR_FAILED}) / (base_runs + {PRIOR_RUNS}))"
    rate = "(failed / runs)"
    z = f"((failed - runs * {base}) / sqrt(runs * {base} * (1 - {base})))"
    cur_rate, prev_rate = "(current_failed / current_runs)", "(previous_failed / previous_runs)"
    ratio = "(current_p95_ms / previous_p95_ms)"
    versions_ok = f"current_runs >= {VERSION_MIN_RUNS} AND previous_runs >= {VERSION_MIN_RUNS}"
    slow = f"({versions_ok} AND previous_p95_ms > 0 AND {ratio} >= {SLOWDOWN_RATIO})"
    vfail = (f"({versions_ok} AND current_failed >= {MIN_FAILED} "
             f"AND {cur_rate} - {prev_rate} >= {VERSION_FAILURE_EXCESS})")
    qratio = f"(queue_p95_ms / greatest(base_queue_p95_ms, {QUEUE_MIN_P95_MS}))"
    late_share = "(delays_late / delays)"

    def pct(expr: str) -> str:
        return f"toString(round(100 * {expr}, 1))"

    return [
        ("failure_rate",
         f"if(runs >= {MIN_RUNS} AND failed >= {MIN_FAILED} AND {rate} >= {FAILURE_RATIO} * {base} "
         f"AND {rate} - {base} >= {FAILURE_EXCESS} AND {z} >= {FAILURE_Z}, {FAILURE_POINTS} * ({rate} - {base}), 0)",
         f"concat('failure rate ', {pct(rate)}, '% (', toString(failed), ' of ', toString(runs), "
         f"' runs) vs baseline ', {pct(base)}, '%')"),
        ("new_errors",
         f"if(new_signatures >= 1 AND base_runs >= {NEW_ERRORS_HISTORY}, "
         f"{NEW_ERRORS_POINTS} * least(new_signatures, {NEW_ERRORS_CAP}), 0)",
         "concat(toString(new_signatures), ' new error signature(s): ', "
         "arrayStringConcat(new_signature_examples, ', '))"),
        ("version_regression",
         f"if({slow}, {SLOWDOWN_POINTS} * least({ratio} - 1, {SLOWDOWN_CAP}), 0) "
         f"+ if({vfail}, {FAILURE_POINTS} * ({cur_rate} - {prev_rate}), 0)",
         f"concat('v', toString(current_version), ' against v', toString(previous_version), ': ', "
         f"arrayStringConcat(arrayFilter(x -> x != '', ["
         f"if({slow}, concat('p95 ', toString(round({ratio}, 2)), 'x'), ''), "
         f"if({vfail}, concat('failure rate ', {pct(cur_rate)}, '% vs ', {pct(prev_rate)}, '%'), '')]), ', '))"),
        ("silent",
         f"if(lookback_runs >= {SILENT_MIN_RUNS} AND active_hours >= {SILENT_MIN_HOURS} "
         f"AND silence_s >= greatest({SILENT_MIN_SECONDS}, {SILENT_GAP_FACTOR} * longest_gap_s), "
         f"{SILENT_POINTS} * least(silence_s / greatest(longest_gap_s, 3600), {SILENT_CAP}), 0)",
         "concat('no finished run for ', toString(round(silence_s / 3600, 1)), ' h')"),
        ("stuck_runs",
         f"if(stuck_runs >= 1, {STUCK_POINTS} * least(stuck_runs, {STUCK_CAP}), 0)",
         "concat(toString(stuck_runs), ' run(s) stuck, the oldest for ', "
         "toString(round(stuck_oldest_ms / 60000)), ' min')"),
        ("queue_growing",
         f"if(queue_samples >= {QUEUE_MIN_SAMPLES} AND base_queue_samples >= {QUEUE_MIN_SAMPLES} "
         f"AND {qratio} >= {QUEUE_RATIO}, {QUEUE_POINTS} * least({qratio}, {QUEUE_CAP}), 0)",
         f"concat('queue wait p95 ', toString(round(queue_p95_ms / 1000)), ' s (', "
         f"toString(round({qratio}, 1)), 'x)')"),
        ("late_delays",
         f"if(delays >= {DELAYS_MIN} AND {late_share} >= {DELAYS_LATE_SHARE} "
         f"AND lateness_avg_ms >= {DELAYS_LATE_AVG_MS}, {DELAYS_POINTS} * 100 * {late_share}, 0)",
         "concat(toString(delays_late), ' of ', toString(delays), ' delays late by ', "
         "toString(round(lateness_avg_ms / 1000)), ' s on average')"),
        ("replays_failing",
         f"if(replays_failed >= {REPLAYS_MIN_FAILED} AND replays_failed >= {REPLAYS_FAILED_SHARE} * replays_finished, "
         f"{REPLAYS_POINTS} * least(replays_failed, {REPLAYS_CAP}), 0)",
         "concat(toString(replays_failed), ' of ', toString(replays_finished), ' replays failed again')"),
    ]


def panel_sql(d: Dialect, limit: int = 50) -> str:
    """Workflows needing attention as a table (account, workflow_id, workflow (its name), score,
    reasons), the rules of ``reasons_of`` written in SQL over ``facts_sql(d)``."""
    rules = _points_sql()
    points = ",\n       ".join(f"{expr} AS p_{kind}" for kind, expr, _ in rules)
    texts = ", ".join(f"if(p_{kind} > 0, {text}, '')" for kind, _, text in rules)
    total = " + ".join(f"p_{kind}" for kind, _, _ in rules)
    return (f"SELECT account_id AS account, workflow_id, workflow_name AS workflow, score, reasons\n"
            f"FROM (\n SELECT *,\n       {points},\n"
            f"       round({total}, 1) AS score,\n"
            f"       arrayStringConcat(arrayFilter(x -> x != '', [{texts}]), '; ') AS reasons\n"
            f" FROM (\n{facts_sql(d)}\n )\n)\n"
            f"WHERE score > 0\nORDER BY score DESC, account, workflow_id\nLIMIT {int(limit)}")


def check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_LIMIT:
        raise QueryError(f"--limit: {limit} (use 1..{MAX_LIMIT})")
