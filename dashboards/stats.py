"""The ``runlens stats`` questions as SQL over the aggregate tables. Pure: builds (sql, params).

Run and step statistics read whole hours from the hourly roll-ups (``run_stats_hourly``,
``step_stats_hourly``, and ``step_stats_daily`` for whole days) and only the minutes at a range's
ragged ends from the minute tables (migration 007).

Every value a user types is a bound parameter; only names from the fixed tables below are
placed in SQL text. Percentiles are merged from t-digest states, never averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from dashboards.runs import Query, window_clauses
from schemas.errors import InputError

GRAINS = {
    "minute": "bucket",
    "hour": "toStartOfHour(bucket)",
    "day": "toStartOfDay(bucket)",
    "week": "toStartOfWeek(bucket, 1)",
    "month": "toStartOfMonth(bucket)",
}

RUN_DIMENSIONS = {
    "account": "account_id",
    "workflow": "workflow_id",
    "version": "workflow_version",
    "type": "workflow_type",
    "trigger": "trigger",
    "site": "site_id",
    "card": "card_id",
}
STEP_DIMENSIONS = {
    "account": "account_id",
    "workflow": "workflow_id",
    "version": "workflow_version",
    "step": "step_id",
}
QUANTILES = "0.5, 0.9, 0.95, 0.99"


class StatsError(InputError):
    """A request that cannot be answered as asked (unknown dimension, grain...)."""

    code = "stats"


@dataclass
class Filters:
    """The product's run filters, all optional; each becomes a bound parameter."""

    since: datetime | None = None
    until: datetime | None = None
    account: str | None = None
    workflow: str | None = None
    version: int | None = None
    type: str | None = None
    trigger: str | None = None
    site: str | None = None
    card: str | None = None

    def where(self, dims: dict[str, str], time_column: str = "bucket") -> tuple[str, dict[str, Any]]:
        clauses, params = window_clauses(time_column, self.since, self.until)
        for name, column in dims.items():
            value = getattr(self, name, None)
            if value is None:
                continue
            ch_type = "UInt32" if name == "version" else "String"
            clauses.append(f"{column} = {{f_{name}:{ch_type}}}")
            params[f"f_{name}"] = value
        return (" AND ".join(clauses) or "1"), params


def _group(by: list[str], dims: dict[str, str]) -> tuple[list[str], list[str]]:
    """SELECT expressions and GROUP BY keys for ``by`` (dimension names and at most one grain)."""
    select, keys = [], []
    for name in by:
        if name in GRAINS:
            select.append(f"{GRAINS[name]} AS {name}")
            keys.append(name)
        elif name in dims:
            select.append(f"{dims[name]} AS {name}")
            keys.append(name)
        else:
            known = ", ".join([*dims, *GRAINS])
            raise StatsError(f"cannot group by {name!r} (choose from: {known})")
    if sum(1 for name in by if name in GRAINS) > 1:
        raise StatsError("group by at most one time grain (minute, hour, day, week, month)")
    return select, keys


def _assemble(select: list[str], metrics: list[str], table: str, where: str, keys: list[str],
              order: str) -> str:
    group = f" GROUP BY {', '.join(keys)}" if keys else ""
    return (f"SELECT {', '.join([*select, *metrics])} FROM {table} WHERE {where}{group} "
            f"ORDER BY {order} LIMIT 1000")


def success(filters: Filters, by: list[str]) -> Query:
    """Finished, succeeded, failed, stopped and success rate."""
    select, keys = _group(by, RUN_DIMENSIONS)
    table, where, params = run_source(filters, minutes="minute" in by)
    metrics = [
        "sum(finished) AS runs_finished", "sum(succeeded) AS succeeded", "sum(failed) AS failed",
        "sum(stopped) AS stopped",
        "if(runs_finished = 0, NULL, round(100 * succeeded / runs_finished, 2)) AS success_pct",
    ]
    if "workflow" in by:
        metrics.insert(0, "anyLast(workflow_name) AS workflow_name")
    order = ", ".join(keys) if any(k in GRAINS for k in keys) else "runs_finished DESC"
    return Query(_assemble(select, metrics, table, where, keys, order), params)


def durations(filters: Filters, by: list[str]) -> Query:
    """Run duration and queue wait percentiles (seconds), merged from digests."""
    select, keys = _group(by, RUN_DIMENSIONS)
    table, where, params = run_source(filters, minutes="minute" in by)
    metrics = [
        "sum(finished) AS runs_finished",
        f"quantilesTDigestMerge({QUANTILES})(duration_digest) AS d",
        "round(d[1] / 1000, 2) AS p50_s", "round(d[2] / 1000, 2) AS p90_s",
        "round(d[3] / 1000, 2) AS p95_s", "round(d[4] / 1000, 2) AS p99_s",
        f"quantilesTDigestMerge({QUANTILES})(queue_wait_digest) AS w",
        "round(w[1] / 1000, 2) AS queue_p50_s", "round(w[3] / 1000, 2) AS queue_p95_s",
        "round(w[4] / 1000, 2) AS queue_p99_s",
    ]
    if "workflow" in by:
        metrics.insert(0, "anyLast(workflow_name) AS workflow_name")
    order = ", ".join(keys) if any(k in GRAINS for k in keys) else "p95_s DESC"
    sql = _assemble(select, metrics, table, where, keys, order)
    outer = [c for c in [*keys, *(["workflow_name"] if "workflow" in by else []), "runs_finished", "p50_s", "p90_s",
                         "p95_s", "p99_s", "queue_p50_s", "queue_p95_s", "queue_p99_s"]]
    return Query(f"SELECT {', '.join(outer)} FROM ({sql})", params)


def _whole(column: str, seconds: int, filters: Filters) -> str:
    """Periods (``column`` = the period's start, its last minute ``seconds`` later) whose every
    minute is inside the time range."""
    clauses = []
    if filters.since is not None:
        clauses.append(f"{column} >= {{since:DateTime64(3, 'UTC')}}")
    if filters.until is not None:
        clauses.append(f"{column} + INTERVAL {seconds} SECOND < {{until:DateTime64(3, 'UTC')}}")
    return " AND ".join(clauses) or "1"


# A step id can carry several names across versions (a step renamed): every path reports the
# name and type of the latest version (the greatest, should one version hold two), so the
# minute, hourly and daily sources agree whatever order their rows come in.
STEP_LABEL = "max((workflow_version, step_name, step_type))"

HOUR, DAY = 3540, 86340   # from a period's start to the start of its last minute


def rollup_source(filters: Filters, minute_table: str, hourly_table: str, dims: dict[str, str],
                  minutes: bool = False, daily_table: str | None = None) -> tuple[str, str, dict[str, Any]]:
    """(FROM source, WHERE, params) over the filters: whole days from ``daily_table`` (if any),
    whole hours (of the range's partial days) from ``hourly_table``, the remaining minutes from
    ``minute_table`` (same columns, same sums and digests; migration 007), then the filters on
    ``dims``. ``minutes``: every row a minute (for a per-minute breakdown), from ``minute_table``."""
    if minutes:
        where, params = filters.where(dims)
        return minute_table, where, params
    time_where, params = filters.where({})
    parts = []
    hours = f"SELECT * FROM {hourly_table} WHERE {_whole('bucket', HOUR, filters)}"
    if daily_table:
        parts.append(f"SELECT * FROM {daily_table} WHERE {_whole('bucket', DAY, filters)}")
        hours += f" AND NOT ({_whole('toStartOfDay(bucket)', DAY, filters)})"
    parts.append(hours)
    parts.append(f"SELECT * FROM {minute_table} WHERE {time_where} "
                 f"AND NOT ({_whole('toStartOfHour(bucket)', HOUR, filters)})")
    where, more = replace(filters, since=None, until=None).where(dims)
    return "(" + " UNION ALL ".join(parts) + ")", where, {**params, **more}


def step_source(filters: Filters, minutes: bool = False, days: bool = True) -> tuple[str, str, dict[str, Any]]:
    """Step statistics: step_stats_daily (unless ``days`` is off, for a per-hour breakdown) +
    step_stats_hourly + the ragged minutes of step_stats_state."""
    dims = {k: v for k, v in STEP_DIMENSIONS.items() if k != "step"}
    return rollup_source(filters, "step_stats_state", "step_stats_hourly", dims, minutes,
                         "step_stats_daily" if days else None)


def run_source(filters: Filters, minutes: bool = False) -> tuple[str, str, dict[str, Any]]:
    """Run statistics: run_stats_hourly + the ragged minutes of run_stats_state."""
    return rollup_source(filters, "run_stats_state", "run_stats_hourly", RUN_DIMENSIONS, minutes)


def bottlenecks(filters: Filters, by: list[str]) -> Query:
    """Steps by share of run time, with failure rate, percentiles, delay lateness and the change
    of p50 against the workflow's previous version (a regression when it grew by half or more)."""
    by = by or ["workflow", "step"]
    select, keys = _group(by, STEP_DIMENSIONS)
    table, where, params = step_source(filters, minutes="minute" in by, days="hour" not in by)
    if not any(name in GRAINS for name in by):
        return Query(" ".join(_bottlenecks_one_pass(select, keys, table, where).split()), params)
    sql = f"""
        WITH latest AS (
            SELECT account_id, workflow_id, max(workflow_version) AS v FROM {table}
            WHERE {where} GROUP BY account_id, workflow_id
        ),
        by_version AS (
            SELECT account_id, workflow_id, step_id, workflow_version,
                   quantilesTDigestMerge(0.5)(duration_digest)[1] AS p50
            FROM {table} WHERE {where}
            GROUP BY account_id, workflow_id, step_id, workflow_version
        ),
        change AS (
            SELECT b.account_id AS account_id, b.workflow_id AS workflow_id, b.step_id AS step_id,
                   argMaxIf(b.p50, b.workflow_version, b.workflow_version = l.v) AS p50_latest,
                   argMaxIf(b.p50, b.workflow_version, b.workflow_version < l.v) AS p50_previous
            FROM by_version AS b INNER JOIN latest AS l
                ON b.account_id = l.account_id AND b.workflow_id = l.workflow_id
            GROUP BY account_id, workflow_id, step_id
        ),
        steps AS (
            SELECT {', '.join([*select, 'account_id AS acct', 'workflow_id AS wf', 'step_id AS sid'])},
                   {STEP_LABEL} AS label,
                   sum(executions) AS runs, sum(failed) AS failures,
                   round(100 * failures / runs, 2) AS failure_pct,
                   sum(duration_sum_ms) AS time_ms,
                   quantilesTDigestMerge({QUANTILES})(duration_digest) AS d,
                   round(d[1] / 1000, 3) AS p50_s, round(d[3] / 1000, 3) AS p95_s,
                   sum(delays_late) AS late_resumes,
                   if(late_resumes = 0, NULL, round(sum(lateness_sum_ms) / late_resumes / 1000, 1)) AS late_by_avg_s
            FROM {table} WHERE {where}
            GROUP BY {', '.join([*keys, 'acct', 'wf', 'sid'])}
        )
        SELECT {', '.join(keys)}, tupleElement(label, 2) AS step_name, tupleElement(label, 3) AS step_type,
               runs, failure_pct, p50_s, p95_s,
               round(100 * time_ms / sum(time_ms) OVER (PARTITION BY acct, wf), 1) AS share_pct,
               late_resumes, late_by_avg_s,
               if(c.p50_previous > 0, round(c.p50_latest / c.p50_previous, 2), NULL) AS p50_vs_prev_version,
               p50_vs_prev_version >= 1.5 AS regressed
        FROM steps LEFT JOIN change AS c ON c.account_id = steps.acct AND c.workflow_id = steps.wf
            AND c.step_id = steps.sid
        ORDER BY share_pct DESC LIMIT 200"""
    return Query(" ".join(sql.split()), params)


def _bottlenecks_one_pass(select: list[str], keys: list[str], table: str, where: str) -> str:
    """bottlenecks() without a time grain, reading the step statistics once: merge each step
    version's digests into one state (its p50 gives the change against the previous version),
    then merge those states per requested group. Same answers as the per-query CTEs below."""
    return f"""
        SELECT {', '.join(keys)}, step_name, step_type, runs, failure_pct, p50_s, p95_s,
               round(100 * time_ms / sum(time_ms) OVER (PARTITION BY acct, wf), 1) AS share_pct,
               late_resumes, late_by_avg_s,
               if(p50_previous > 0, round(p50_latest / p50_previous, 2), NULL) AS p50_vs_prev_version,
               p50_vs_prev_version >= 1.5 AS regressed
        FROM (
            SELECT {', '.join([*select, 'account_id AS acct', 'workflow_id AS wf', 'step_id AS sid'])},
                   max((workflow_version, name, type)) AS label, tupleElement(label, 2) AS step_name,
                   tupleElement(label, 3) AS step_type,
                   sum(n) AS runs, sum(bad) AS failures,
                   round(100 * failures / runs, 2) AS failure_pct,
                   sum(tms) AS time_ms,
                   quantilesTDigestMerge({QUANTILES})(dstate) AS d,
                   round(d[1] / 1000, 3) AS p50_s, round(d[3] / 1000, 3) AS p95_s,
                   sum(late) AS late_resumes,
                   if(late_resumes = 0, NULL, round(sum(lsum) / late_resumes / 1000, 1)) AS late_by_avg_s,
                   any(p50_at_latest) AS p50_latest, any(p50_at_previous) AS p50_previous
            FROM (
                SELECT *,
                       argMaxIf(p50, workflow_version, workflow_version = latest)
                           OVER (PARTITION BY account_id, workflow_id, step_id) AS p50_at_latest,
                       argMaxIf(p50, workflow_version, workflow_version < latest)
                           OVER (PARTITION BY account_id, workflow_id, step_id) AS p50_at_previous
                FROM (
                    SELECT *, finalizeAggregation(dstate)[1] AS p50,
                           max(workflow_version) OVER (PARTITION BY account_id, workflow_id) AS latest
                    FROM (
                        SELECT account_id, workflow_id, step_id, workflow_version,
                               max((step_name, step_type)) AS version_label,
                               tupleElement(version_label, 1) AS name, tupleElement(version_label, 2) AS type,
                               sum(executions) AS n, sum(failed) AS bad, sum(duration_sum_ms) AS tms,
                               quantilesTDigestMergeState({QUANTILES})(duration_digest) AS dstate,
                               sum(delays_late) AS late, sum(lateness_sum_ms) AS lsum
                        FROM {table} WHERE {where}
                        GROUP BY account_id, workflow_id, step_id, workflow_version
                    )
                )
            )
            GROUP BY {', '.join([*keys, 'acct', 'wf', 'sid'])}
        )
        ORDER BY share_pct DESC LIMIT 200"""


def queue(filters: Filters, grain: str) -> Query:
    """Pending and running depth per account over time (the peak within each period), arrivals,
    completions per minute, utilisation of the busiest period's concurrency and a backlog ETA."""
    if grain not in GRAINS:
        raise StatsError(f"unknown time grain {grain!r} (choose from: {', '.join(GRAINS)})")
    where, params = filters.where({"account": "account_id"}, time_column="time")
    period = GRAINS[grain].replace("bucket", "time")
    minutes = {"minute": 1, "hour": 60, "day": 1440, "week": 10080, "month": 43200}[grain]
    sql = f"""
        SELECT {period} AS period, account_id,
               max(pending) AS pending_peak, argMax(pending, time) AS pending_end,
               max(running) AS running_peak,
               sum(arrivals) AS arrivals, sum(completions) AS completions,
               round(completions / {minutes}, 2) AS completions_per_min,
               round(100 * avg(running) / nullIf(max(max(running)) OVER (PARTITION BY account_id), 0), 1)
                   AS utilisation_pct,
               if(completions > arrivals AND pending_end > 0,
                  round(pending_end / ((completions - arrivals) / {minutes}), 1), NULL) AS backlog_eta_min
        FROM queue_depth WHERE {where}
        GROUP BY period, account_id ORDER BY account_id, period LIMIT 5000"""
    return Query(" ".join(sql.split()), params)


def alerts(filters: Filters, state: str | None) -> Query:
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if filters.account:
        clauses.append("account_id = {f_account:String}")
        params["f_account"] = filters.account
    window, bounds = window_clauses("started_at", filters.since, None)   # alerts that started since
    clauses += window
    params.update(bounds)
    if state:
        clauses.append("state = {state:String}")
        params["state"] = state
    where = " AND ".join(clauses) or "1"
    return Query("SELECT started_at, resolved_at, state, severity, kind, account_id, subject_name, summary "
                 f"FROM alerts WHERE {where} ORDER BY state = 'resolved', started_at DESC LIMIT 500", params)


def peaks(filters: Filters) -> Query:
    """Runs finished per hour of the week (UTC): when the engine is busiest."""
    table, where, params = run_source(filters)
    sql = (f"SELECT toDayOfWeek(bucket) AS weekday, toHour(bucket) AS hour, sum(finished) AS runs, "
           f"sum(failed) AS failed FROM {table} WHERE {where} GROUP BY weekday, hour "
           "ORDER BY weekday, hour")
    return Query(sql, params)
