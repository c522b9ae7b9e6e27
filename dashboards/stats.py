"""The ``runlens stats`` questions as SQL over the aggregate tables. Pure: builds (sql, params).

Every value a user types is a bound parameter; only names from the fixed tables below are
placed in SQL text. Percentiles are merged from t-digest states, never averaged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


class StatsError(ValueError):
    """A request that cannot be answered as asked (unknown dimension, grain...)."""


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
        clauses, params = [], {}
        if self.since is not None:
            clauses.append(f"{time_column} >= {{since:DateTime64(3, 'UTC')}}")
            params["since"] = self.since
        if self.until is not None:
            clauses.append(f"{time_column} < {{until:DateTime64(3, 'UTC')}}")
            params["until"] = self.until
        for name, column in dims.items():
            value = getattr(self, name, None)
            if value is None:
                continue
            ch_type = "UInt32" if name == "version" else "String"
            clauses.append(f"{column} = {{f_{name}:{ch_type}}}")
            params[f"f_{name}"] = value
        return (" AND ".join(clauses) or "1"), params


@dataclass
class Query:
    sql: str
    params: dict[str, Any] = field(default_factory=dict)


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
    where, params = filters.where(RUN_DIMENSIONS)
    metrics = [
        "sum(finished) AS runs_finished", "sum(succeeded) AS succeeded", "sum(failed) AS failed",
        "sum(stopped) AS stopped",
        "if(runs_finished = 0, NULL, round(100 * succeeded / runs_finished, 2)) AS success_pct",
    ]
    if "workflow" in by:
        metrics.insert(0, "anyLast(workflow_name) AS workflow_name")
    order = ", ".join(keys) if any(k in GRAINS for k in keys) else "runs_finished DESC"
    return Query(_assemble(select, metrics, "run_stats_state", where, keys, order), params)


def durations(filters: Filters, by: list[str]) -> Query:
    """Run duration and queue wait percentiles (seconds), merged from digests."""
    select, keys = _group(by, RUN_DIMENSIONS)
    where, params = filters.where(RUN_DIMENSIONS)
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
    sql = _assemble(select, metrics, "run_stats_state", where, keys, order)
    outer = [c for c in [*keys, *(["workflow_name"] if "workflow" in by else []), "runs_finished", "p50_s", "p90_s",
                         "p95_s", "p99_s", "queue_p50_s", "queue_p95_s", "queue_p99_s"]]
    return Query(f"SELECT {', '.join(outer)} FROM ({sql})", params)


def bottlenecks(filters: Filters, by: list[str]) -> Query:
    """Steps by share of run time, with failure rate, percentiles, delay lateness and the change
    of p50 against the workflow's previous version (a regression when it grew by half or more)."""
    by = by or ["workflow", "step"]
    select, keys = _group(by, STEP_DIMENSIONS)
    where, params = filters.where({k: v for k, v in STEP_DIMENSIONS.items() if k != "step"})
    select = [s for s in select]
    sql = f"""
        WITH latest AS (
            SELECT account_id, workflow_id, max(workflow_version) AS v FROM step_stats_state
            WHERE {where} GROUP BY account_id, workflow_id
        ),
        by_version AS (
            SELECT account_id, workflow_id, step_id, workflow_version,
                   quantilesTDigestMerge(0.5)(duration_digest)[1] AS p50
            FROM step_stats_state WHERE {where}
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
                   anyLast(step_name) AS step_name, anyLast(step_type) AS step_type,
                   sum(executions) AS runs, sum(failed) AS failures,
                   round(100 * failures / runs, 2) AS failure_pct,
                   sum(duration_sum_ms) AS time_ms,
                   quantilesTDigestMerge({QUANTILES})(duration_digest) AS d,
                   round(d[1] / 1000, 3) AS p50_s, round(d[3] / 1000, 3) AS p95_s,
                   sum(delays_late) AS late_resumes,
                   if(late_resumes = 0, NULL, round(sum(lateness_sum_ms) / late_resumes / 1000, 1)) AS late_by_avg_s
            FROM step_stats_state WHERE {where}
            GROUP BY {', '.join([*keys, 'acct', 'wf', 'sid'])}
        )
        SELECT {', '.join(keys)}, step_name, step_type, runs, failure_pct, p50_s, p95_s,
               round(100 * time_ms / sum(time_ms) OVER (PARTITION BY acct, wf), 1) AS share_pct,
               late_resumes, late_by_avg_s,
               if(c.p50_previous > 0, round(c.p50_latest / c.p50_previous, 2), NULL) AS p50_vs_prev_version,
               p50_vs_prev_version >= 1.5 AS regressed
        FROM steps LEFT JOIN change AS c ON c.account_id = steps.acct AND c.workflow_id = steps.wf
            AND c.step_id = steps.sid
        ORDER BY share_pct DESC LIMIT 200"""
    return Query(" ".join(sql.split()), params)


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
    clauses, params = [], {}
    if filters.account:
        clauses.append("account_id = {f_account:String}")
        params["f_account"] = filters.account
    if filters.since:
        clauses.append("started_at >= {since:DateTime64(3, 'UTC')}")
        params["since"] = filters.since
    if state:
        clauses.append("state = {state:String}")
        params["state"] = state
    where = " AND ".join(clauses) or "1"
    return Query("SELECT started_at, resolved_at, state, severity, kind, account_id, subject_name, summary "
                 f"FROM alerts WHERE {where} ORDER BY state = 'resolved', started_at DESC LIMIT 500", params)


def peaks(filters: Filters) -> Query:
    """Runs finished per hour of the week (UTC): when the engine is busiest."""
    where, params = filters.where(RUN_DIMENSIONS)
    sql = (f"SELECT toDayOfWeek(bucket) AS weekday, toHour(bucket) AS hour, sum(finished) AS runs, "
           f"sum(failed) AS failed FROM run_stats_state WHERE {where} GROUP BY weekday, hour "
           "ORDER BY weekday, hour")
    return Query(sql, params)
