"""Every dashboard panel and alert rule, defined once.

The Grafana JSON (``dashboards.grafana``) and the HTML report (``dashboards.report``) are both
rendered from these definitions: the same SQL, with the ClickHouse plugin's macros and
template variables (see ``dashboards.macros`` for how they expand).

Conventions every panel query follows, so any renderer can draw it:

* ``timeseries``: the first column is the time (``DateTime``), sorted ascending; string
  columns are series labels (the plugin turns such a "long" result into one series per label
  value); every numeric column is a series.
* ``heatmap``: the first column is the time, every other column one bucket of the y axis.
* ``barchart``: the first string column is the category axis, numeric columns are series.
* ``piechart``: a string column (slice) and a numeric column (size).
* ``stat``: numeric columns of the first row, one value each.
* ``table``: any columns.

Filters: every dashboard has the variables account, workflow, version, type, trigger, site and
card (multi-value, *All* by default). Run panels filter on all seven; step panels filter on
account, workflow and version directly and on the others through the workflows whose runs
match; queue panels on account only (queue depth is kept per account); pipeline panels on
account where the data has one. Each filter is wrapped in ``$__conditionalAll`` so *All*
costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DATASOURCE_UID = "runlens-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
FOLDER_UID = "runlens"
FOLDER_TITLE = "runlens"

WORKFLOW_TYPES = ("card", "site", "contact", "survey", "integration")
TRIGGERS = ("manual", "automatic", "api", "scheduled")


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: a ClickHouse query (``sql``) or a fixed list (``options``)."""

    name: str
    label: str
    sql: str | None = None
    options: tuple[str, ...] = ()
    description: str = ""
    multi: bool = True
    include_all: bool = True

    @property
    def kind(self) -> str:
        return "query" if self.sql else "custom"


@dataclass(frozen=True)
class Link:
    """A link on a table column; ``${__data.fields.<column>}`` is the clicked row's value."""

    column: str
    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    type: str                          # timeseries | stat | table | barchart | piechart | heatmap
    sql: str
    grid: tuple[int, int, int, int]    # x, y, w, h on Grafana's 24-column grid
    unit: str | None = None
    description: str = ""
    min_interval: str | None = None    # Grafana's panel "min interval": floor of $__interval
    stacked: bool = False              # timeseries/barchart: stack the series
    bars: bool = False                 # timeseries: draw bars instead of lines
    horizontal: bool = False           # barchart orientation
    links: tuple[Link, ...] = ()
    decimals: int | None = None

    @property
    def time_series(self) -> bool:
        """Whether the plugin is asked for a time series (format 0) rather than a table."""
        return self.type in ("timeseries", "heatmap")


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    time_from: str = "now-6h"
    refresh: str = "1m"

    def panel(self, panel_id: int) -> Panel:
        return next(p for p in self.panels if p.id == panel_id)


@dataclass(frozen=True)
class AlertRule:
    """A Grafana-managed rule: query A (ClickHouse, over the last ``window_s`` seconds, one
    numeric column and string columns that become labels), condition B = threshold on A."""

    uid: str
    title: str
    sql: str
    window_s: int
    op: str                            # gt | lt
    threshold: float
    pending: str                       # Grafana's "for": how long it must hold before firing
    severity: str
    summary: str
    description: str
    runbook: str
    dashboard_uid: str
    panel_id: int
    no_data_state: str = "OK"          # OK | NoData | Alerting
    exec_err_state: str = "Error"      # OK | Error | Alerting
    labels: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- filters


def _cond(variable: str, condition: str) -> str:
    return f"$__conditionalAll({condition}, ${variable})"


def values_of(variable: str) -> str:
    """The values selected in a multi-value dashboard variable, as a one-column subquery.

    No value is ever placed in the SQL as text ClickHouse parses: Grafana writes the selection
    with ``:percentencode`` (Grafana's ``encodeURIComponentStrict``: only ``A-Z a-z 0-9 - _ . ~``
    and ``%XX`` remain, so nothing can end the literal or escape its quote, whatever the value;
    ``:singlequote`` / ``:sqlstring`` leave ``\\``, which ClickHouse reads as an escape) and
    ClickHouse decodes it. Several values arrive as ``{a,b}`` (encoded as a whole), one value of
    a single-value selection as itself. A value holding a comma and wrapped in braces reads as
    several values, as if each had been selected; it can never become SQL. ``$__conditionalAll``
    drops the whole condition for *All*, before this runs. The report binds the same encoded
    text as a server-side parameter instead (``macros.expand_bound``)."""
    return (f"(WITH decodeURLComponent('${{{variable}:percentencode}}') AS v "
            "SELECT arrayJoin(if(v LIKE '{%}', splitByChar(',', substring(v, 2, length(v) - 2)), [v])))")


def _in(column: str, variable: str) -> str:
    return _cond(variable, f"{column} IN {values_of(variable)}")


def run_filter(prefix: str = "") -> str:
    """All seven run dimensions (``run_stats_state`` and ``runs`` have the same columns)."""
    p = prefix
    return " AND ".join([
        _in(f"{p}account_id", "account"),
        _in(f"{p}workflow_id", "workflow"),
        _in(f"toString({p}workflow_version)", "version"),
        _in(f"{p}workflow_type", "type"),
        _in(f"{p}trigger", "trigger"),
        _in(f"{p}site_id", "site"),
        _in(f"{p}card_id", "card"),
    ])


def _workflows_matching() -> str:
    """Workflows that had runs of the selected type/trigger/site/card in the time range."""
    return ("workflow_id IN (SELECT DISTINCT workflow_id FROM run_stats_state WHERE $__timeFilter(bucket) AND "
            + " AND ".join([_in("workflow_type", "type"), _in("trigger", "trigger"),
                            _in("site_id", "site"), _in("card_id", "card")]) + ")")


def step_filter(with_version: bool = True) -> str:
    parts = [_in("account_id", "account"), _in("workflow_id", "workflow")]
    if with_version:
        parts.append(_in("toString(workflow_version)", "version"))
    parts.append(_workflows_matching())
    return " AND ".join(parts)


ACCOUNT = _in("account_id", "account")
RUNS = run_filter()


def _sql(text: str) -> str:
    """Dedent a query for readability in Grafana's editor (one space per indentation level)."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


# --------------------------------------------------------------------------- variables

VARIABLES = (
    Variable("account", "Account", _sql("""
        SELECT DISTINCT account_id FROM run_stats_state
        WHERE $__timeFilter(bucket) ORDER BY account_id"""),
        description="Accounts (tenants) with finished runs in the time range."),
    Variable("workflow", "Workflow", _sql(f"""
        SELECT workflow_id, concat(anyLast(workflow_name), ' (', workflow_id, ')') AS text
        FROM run_stats_state
        WHERE $__timeFilter(bucket) AND {ACCOUNT}
        GROUP BY workflow_id ORDER BY text"""),
        description="Workflows of the selected accounts (value: id, text: name)."),
    Variable("version", "Version", _sql(f"""
        SELECT DISTINCT toString(workflow_version) FROM run_stats_state
        WHERE $__timeFilter(bucket) AND {ACCOUNT} AND {_in('workflow_id', 'workflow')}
        ORDER BY toUInt32(toString(workflow_version))"""),
        description="Workflow versions of the selected workflows."),
    Variable("type", "Workflow type", options=WORKFLOW_TYPES),
    Variable("trigger", "Trigger", options=TRIGGERS),
    Variable("site", "Site", _sql(f"""
        SELECT DISTINCT site_id FROM run_stats_state
        WHERE $__timeFilter(bucket) AND site_id != '' AND {ACCOUNT} ORDER BY site_id"""),
        description="Sites the selected accounts' runs belong to."),
    Variable("card", "Card", _sql(f"""
        SELECT DISTINCT card_id FROM run_stats_state
        WHERE $__timeFilter(bucket) AND card_id != '' AND {ACCOUNT} ORDER BY card_id"""),
        description="Cards (forms, quizzes, surveys) the selected accounts' runs belong to."),
)

PER_MINUTE = "($__interval_s / 60)"

# Bands of the run duration histogram and their run_stats_state columns (migration 007).
DURATION_BANDS = (
    ("< 1 s", "duration_lt_1s"), ("1-5 s", "duration_1_5s"), ("5-15 s", "duration_5_15s"),
    ("15-60 s", "duration_15_60s"), ("1-5 min", "duration_1_5min"), ("5-30 min", "duration_5_30min"),
    ("30 min +", "duration_30min_plus"),
)

# --------------------------------------------------------------------------- 1. overview

OVERVIEW = Dashboard(
    uid="runlens-overview",
    title="runlens / Overview",
    description="Runs, success rate, failure rates, durations and when the engine is busiest.",
    panels=(
        Panel(1, "Runs finished", "stat", _sql(f"""
            SELECT sum(finished) AS finished
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (0, 0, 6, 4), unit="short", description="Runs that finished (any outcome) in the time range."),
        Panel(2, "Success rate", "stat", _sql(f"""
            SELECT round(100 * sum(succeeded) / nullIf(sum(finished), 0), 2) AS success_pct
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (6, 0, 6, 4), unit="percent", decimals=1),
        Panel(3, "Failed runs", "stat", _sql(f"""
            SELECT sum(failed) AS failed
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}"""),
            (12, 0, 6, 4), unit="short"),
        Panel(4, "Run duration p95", "stat", _sql(f"""
            SELECT quantilesTDigestMerge(0.95)(duration_digest)[1] AS p95
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS} AND finished > 0"""),
            (18, 0, 6, 4), unit="ms"),
        Panel(5, "Runs per minute by status", "timeseries", _sql(f"""
            SELECT $__timeInterval(bucket) AS time,
                   sum(succeeded) / {PER_MINUTE} AS success,
                   sum(failed) / {PER_MINUTE} AS failed,
                   sum(stopped) / {PER_MINUTE} AS stopped
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time ORDER BY time"""),
            (0, 4, 12, 8), unit="suffix: runs/min", min_interval="1m", stacked=True, bars=True,
            description="Finished runs per minute, by outcome, in the minute they finished."),
        Panel(6, "Success rate trend", "timeseries", _sql(f"""
            SELECT $__timeInterval(bucket) AS time,
                   round(100 * sum(succeeded) / sum(finished), 2) AS success_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time HAVING sum(finished) > 0 ORDER BY time"""),
            (12, 4, 12, 8), unit="percent", min_interval="5m",
            description="Share of finished runs that succeeded (stopped runs count as not succeeded)."),
        Panel(7, "Failure rate by workflow type and trigger", "barchart", _sql(f"""
            SELECT workflow_type,
                   round(100 * sumIf(failed, trigger = 'manual')
                         / nullIf(sumIf(finished, trigger = 'manual'), 0), 2) AS manual,
                   round(100 * sumIf(failed, trigger = 'automatic')
                         / nullIf(sumIf(finished, trigger = 'automatic'), 0), 2) AS automatic,
                   round(100 * sumIf(failed, trigger = 'api')
                         / nullIf(sumIf(finished, trigger = 'api'), 0), 2) AS api,
                   round(100 * sumIf(failed, trigger = 'scheduled')
                         / nullIf(sumIf(finished, trigger = 'scheduled'), 0), 2) AS scheduled
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY workflow_type HAVING sum(finished) > 0 ORDER BY workflow_type"""),
            (0, 12, 12, 8), unit="percent",
            description="Failed share of finished runs per workflow type, one bar per trigger."),
        Panel(8, "Run duration p50 / p95", "timeseries", _sql(f"""
            SELECT time, q[1] AS p50, q[2] AS p95
            FROM (
                SELECT $__timeInterval(bucket) AS time, quantilesTDigestMerge(0.5, 0.95)(duration_digest) AS q
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND {RUNS} AND finished > 0
                GROUP BY time
            )
            ORDER BY time"""),
            (12, 12, 12, 8), unit="ms", min_interval="5m",
            description="Run duration (start to finish) percentiles, merged from t-digests."),
        Panel(9, "Runs per day", "barchart", _sql(f"""
            SELECT formatDateTime(toStartOfDay(bucket), '%Y-%m-%d') AS day,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY day ORDER BY day"""),
            (0, 20, 8, 8), stacked=True, unit="short"),
        Panel(10, "Runs per week", "barchart", _sql(f"""
            SELECT formatDateTime(toStartOfWeek(bucket, 1), '%Y-%m-%d') AS week,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY week ORDER BY week"""),
            (8, 20, 8, 8), stacked=True, unit="short", description="Weeks start on Monday (UTC)."),
        Panel(11, "Runs per month", "barchart", _sql(f"""
            SELECT formatDateTime(toStartOfMonth(bucket), '%Y-%m') AS month,
                   sum(succeeded) AS success, sum(failed) AS failed, sum(stopped) AS stopped
            FROM run_stats_state WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY month ORDER BY month"""),
            (16, 20, 8, 8), stacked=True, unit="short"),
        Panel(12, "Peak hours (runs finished per hour of day, UTC)", "heatmap", _sql(f"""
            SELECT toStartOfDay(bucket) AS time,
                   {', '.join(f"sumIf(finished, toHour(bucket) = {h}) AS `{h:02d}`" for h in range(24))}
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time ORDER BY time"""),
            (0, 28, 24, 9), unit="short",
            description="One column per day, one row per hour of the day: when the engine is busiest."),
    ),
)

# --------------------------------------------------------------------------- 2. workflow

STEPS = step_filter()

# Step statistics over the time range: whole days from step_stats_daily, whole hours of the
# partial first and last day from step_stats_hourly, the remaining minutes from step_stats_state
# (migration 007). Same columns, same sums and digests as step_stats_state alone, a fraction
# of the rows and of the t-digest centroids to merge.
def _whole(column: str, seconds: int) -> str:
    """Rows whose period (starting at ``column``, its last minute ``seconds`` later) lies inside."""
    return f"{column} >= $__fromTime AND {column} + INTERVAL {seconds} SECOND <= $__toTime"


STEP_STATS = (
    "(SELECT * FROM step_stats_daily WHERE " + _whole("bucket", 86340)
    + " UNION ALL SELECT * FROM step_stats_hourly WHERE " + _whole("bucket", 3540)
    + " AND NOT (" + _whole("toStartOfDay(bucket)", 86340) + ")"
    + " UNION ALL SELECT * FROM step_stats_state WHERE $__timeFilter(bucket) AND NOT ("
    + _whole("toStartOfHour(bucket)", 3540) + "))"
)

WORKFLOW = Dashboard(
    uid="runlens-workflow",
    title="runlens / Workflow drill-down",
    description="Where a workflow spends its time, how its versions compare, how late its delays resume.",
    panels=(
        Panel(1, "Step bottlenecks (share of run time)", "barchart", _sql(f"""
            SELECT concat(workflow_id, ' / ', step_name) AS step,
                   round(100 * sum(duration_sum_ms) / sum(sum(duration_sum_ms)) OVER (PARTITION BY workflow_id), 1)
                       AS share_pct
            FROM {STEP_STATS}
            WHERE step_type != 'delay' AND {STEPS}
            GROUP BY workflow_id, step_name
            ORDER BY share_pct DESC, step LIMIT 15"""),
            (0, 0, 12, 10), unit="percent", horizontal=True,
            description="Each step's share of its workflow's working time (delays excluded)."),
        Panel(2, "Slowest steps", "table", _sql(f"""
            SELECT workflow, step, type, runs, failure_pct,
                   round(q[1]) AS p50_ms, round(q[2]) AS p95_ms, round(q[3]) AS p99_ms
            FROM (
                SELECT workflow_id AS workflow, step_name AS step, step_type AS type,
                       sum(executions) AS runs,
                       round(100 * sum(failed) / sum(executions), 2) AS failure_pct,
                       quantilesTDigestMerge(0.5, 0.95, 0.99)(duration_digest) AS q
                FROM {STEP_STATS}
                WHERE step_type != 'delay' AND {STEPS}
                GROUP BY workflow, step, type
            )
            ORDER BY p95_ms DESC LIMIT 20"""),
            (12, 0, 12, 10), unit="ms"),
        Panel(3, "Run duration histogram", "barchart", _sql(f"""
            SELECT duration, runs
            FROM (
                SELECT [{', '.join(f"'{label}'" for label, _ in DURATION_BANDS)}] AS bands,
                       [{', '.join(f"sum({column})" for _, column in DURATION_BANDS)}] AS counts
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND {RUNS}
            )
            ARRAY JOIN bands AS duration, counts AS runs
            WHERE runs > 0"""),
            (0, 10, 12, 8), unit="short",
            description="Finished runs by duration (start to finish), in the minute they finished."),
        Panel(4, "Version comparison", "table", _sql(f"""
            SELECT workflow, version, runs, failure_pct, round(q[1]) AS p50_ms, round(q[2]) AS p95_ms,
                   first_seen, last_seen
            FROM (
                SELECT workflow_id AS workflow, workflow_version AS version,
                       sum(finished) AS runs,
                       round(100 * sum(failed) / nullIf(sum(finished), 0), 2) AS failure_pct,
                       quantilesTDigestMerge(0.5, 0.95)(duration_digest) AS q,
                       min(bucket) AS first_seen, max(bucket) AS last_seen
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND finished > 0 AND {RUNS}
                GROUP BY workflow, version
            )
            ORDER BY workflow, version DESC"""),
            (12, 10, 12, 8),
            description="Each workflow version's runs, failure rate and duration, newest first."),
        Panel(5, "Delay steps: lateness of resumes", "timeseries", _sql(f"""
            SELECT $__timeInterval(bucket) AS time,
                   sum(lateness_sum_ms) / sum(delays) AS avg_lateness,
                   toFloat64(max(lateness_max_ms)) AS max_lateness
            FROM step_stats_state
            WHERE $__timeFilter(bucket) AND delays > 0 AND {STEPS}
            GROUP BY time ORDER BY time"""),
            (0, 18, 12, 8), unit="ms", min_interval="5m",
            description="How long after its scheduled time a delay step resumed."),
        Panel(6, "Delay steps by workflow", "table", _sql(f"""
            SELECT workflow_id AS workflow, step_name AS step, sum(delays) AS resumes,
                   sum(delays_late) AS late, round(100 * late / resumes, 1) AS late_pct,
                   round(sum(lateness_sum_ms) / resumes) AS avg_lateness_ms,
                   toFloat64(max(lateness_max_ms)) AS max_lateness_ms
            FROM {STEP_STATS}
            WHERE delays > 0 AND {STEPS}
            GROUP BY workflow, step ORDER BY late_pct DESC, resumes DESC, workflow, step"""),
            (12, 18, 12, 8), description="A resume is late when more than 1 s after its schedule."),
    ),
)

# --------------------------------------------------------------------------- 3. failures

WORKFLOW_LINK = ("/d/runlens-workflow?var-account=${__data.fields.account:percentencode}"
                 "&var-workflow=${__data.fields.workflow_id:percentencode}&${__url_time_range}")

FAILURES = Dashboard(
    uid="runlens-failures",
    title="runlens / Failures",
    description="What fails, where, why, and whether replays fixed it.",
    panels=(
        Panel(1, "Top error codes", "barchart", _sql(f"""
            SELECT error_code, count() AS failed_runs
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            GROUP BY error_code ORDER BY failed_runs DESC, error_code LIMIT 10"""),
            (0, 0, 12, 8), unit="short", horizontal=True),
        Panel(2, "Error classes", "piechart", _sql(f"""
            SELECT ifNull(error_class, 'unknown') AS error_class, count() AS failed_runs
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            GROUP BY error_class ORDER BY failed_runs DESC, error_class"""),
            (12, 0, 12, 8), unit="short"),
        Panel(3, "Failing steps", "table", _sql(f"""
            SELECT any(workflow_name) AS workflow, step, any(step_type) AS type,
                   sum(n) AS failures, uniqExactMerge(run_ids) AS runs, sum(retried) AS on_retry,
                   arraySort(x -> (-x.1, x.2), groupArray((n, error_code)))[1].2 AS top_error,
                   max(last) AS last_failure
            FROM (
                SELECT workflow_id, assumeNotNull(step_name) AS step, error_code,
                       any(workflow_name) AS workflow_name, any(step_type) AS step_type, count() AS n,
                       uniqExactState(account_id, run_id) AS run_ids, countIf(attempt > 1) AS retried,
                       max(ts) AS last
                FROM run_notes FINAL
                WHERE scope = 'step' AND $__timeFilter(ts) AND {RUNS}
                GROUP BY workflow_id, step, error_code
            )
            GROUP BY workflow_id, step ORDER BY failures DESC, workflow_id, step LIMIT 20"""),
            (0, 8, 12, 8),
            description="Failed step attempts (retries included), the runs they failed in, and each "
                        "step's most frequent error code."),
        Panel(4, "Failure rate by workflow type", "timeseries", _sql(f"""
            SELECT $__timeInterval(bucket) AS time, workflow_type,
                   round(100 * sum(failed) / sum(finished), 2) AS failure_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket) AND {RUNS}
            GROUP BY time, workflow_type HAVING sum(finished) > 0
            ORDER BY time, workflow_type"""),
            (12, 8, 12, 8), unit="percent", min_interval="15m"),
        Panel(5, "Replay outcomes", "barchart", _sql(f"""
            SELECT ifNull(replay_mode, 'unknown') AS replay_mode,
                   countIf(status = 'success') AS success, countIf(status = 'failed') AS failed,
                   countIf(status = 'stopped') AS stopped,
                   countIf(status IN ('pending', 'running')) AS in_progress
            FROM (
                SELECT account_id, run_id, argMax(replay_mode, ts) AS replay_mode,
                       if(countIf(step_id = 'run.finished') > 0, argMaxIf(status, ts, step_id = 'run.finished'),
                          if(countIf(step_id = 'run.started') > 0, 'running', 'pending')) AS status,
                       countIf(step_id = 'run.queued') > 0 AS queued, minIf(ts, step_id = 'run.queued') AS queued_at,
                       argMax(workflow_id, ts) AS workflow_id, argMax(workflow_version, ts) AS workflow_version,
                       argMax(workflow_type, ts) AS workflow_type, argMax(trigger, ts) AS trigger,
                       argMax(site_id, ts) AS site_id, argMax(card_id, ts) AS card_id
                FROM run_notes FINAL
                WHERE scope = 'replay' AND {ACCOUNT}
                GROUP BY account_id, run_id
            )
            WHERE queued AND $__timeFilter(queued_at) AND {RUNS}
            GROUP BY replay_mode ORDER BY replay_mode"""),
            (0, 16, 8, 8), stacked=True, unit="short",
            description="Runs that replay a failed run (exact or modified), by their outcome."),
        Panel(6, "Recent failed runs", "table", _sql(f"""
            SELECT ts AS finished_at, account_id AS account, workflow_name AS workflow, workflow_id,
                   workflow_version AS version, run_id, error_code, error_class, error_message
            FROM run_notes FINAL
            WHERE scope = 'run' AND $__timeFilter(ts) AND {RUNS}
            ORDER BY finished_at DESC, account, run_id LIMIT 50"""),
            (8, 16, 16, 8),
            links=(Link("workflow", "Drill into this workflow", WORKFLOW_LINK),),
            description="Newest first; click a workflow to drill into it."),
    ),
)

# --------------------------------------------------------------------------- 4. queue

QUEUE = Dashboard(
    uid="runlens-queue",
    title="runlens / Queue and capacity",
    description="Queue depth, wait, throughput, utilisation and how long a backlog takes to drain.",
    panels=(
        Panel(1, "Pending and running runs", "timeseries", _sql(f"""
            SELECT $__timeInterval(time) AS t, account_id,
                   max(pending) AS pending, max(running) AS running
            FROM queue_depth
            WHERE $__timeFilter(time) AND {ACCOUNT}
            GROUP BY t, account_id ORDER BY t, account_id"""),
            (0, 0, 12, 8), unit="short",
            description="Peak depth per interval: runs queued and not started, runs started and not finished."),
        Panel(2, "Queue wait p50 / p95", "timeseries", _sql(f"""
            SELECT time, q[1] AS p50, q[2] AS p95
            FROM (
                SELECT $__timeInterval(bucket) AS time, quantilesTDigestMerge(0.5, 0.95)(queue_wait_digest) AS q
                FROM run_stats_state
                WHERE $__timeFilter(bucket) AND queue_samples > 0 AND {RUNS}
                GROUP BY time
            )
            ORDER BY time"""),
            (12, 0, 12, 8), unit="ms", min_interval="5m",
            description="Time from queued to started, in the minute the run started."),
        Panel(3, "Arrivals and completions per minute", "timeseries", _sql(f"""
            SELECT $__timeInterval(bucket) AS time, account_id,
                   sum(queued) / {PER_MINUTE} AS arrivals,
                   sum(finished) / {PER_MINUTE} AS completions
            FROM queue_state
            WHERE $__timeFilter(bucket) AND {ACCOUNT}
            GROUP BY time, account_id ORDER BY time, account_id"""),
            (0, 8, 12, 8), unit="suffix: runs/min", min_interval="1m"),
        Panel(4, "Utilisation (running vs. peak concurrency)", "timeseries", _sql(f"""
            SELECT t AS time, account_id,
                   round(100 * avg_running / nullIf(max(peak) OVER (PARTITION BY account_id), 0), 1) AS utilisation
            FROM (
                SELECT $__timeInterval(time) AS t, account_id, avg(running) AS avg_running, max(running) AS peak
                FROM queue_depth
                WHERE $__timeFilter(time) AND {ACCOUNT}
                GROUP BY t, account_id
            )
            ORDER BY time, account_id"""),
            (12, 8, 12, 8), unit="percent", min_interval="1m",
            description="Average running runs against the most that ran at once in the time range "
                        "(the observed capacity)."),
        Panel(5, "Backlog and drain ETA", "table", _sql(f"""
            SELECT account_id AS account,
                   argMax(pending, time) AS pending_now,
                   argMax(running, time) AS running_now,
                   round(sumIf(arrivals, time > $__toTime - INTERVAL 15 MINUTE) / 15, 2) AS arrivals_per_min,
                   round(sumIf(completions, time > $__toTime - INTERVAL 15 MINUTE) / 15, 2) AS completions_per_min,
                   if(pending_now = 0, 0,
                      if(completions_per_min > arrivals_per_min,
                         round(pending_now / (completions_per_min - arrivals_per_min), 1), NULL)) AS eta_minutes
            FROM queue_depth
            WHERE $__timeFilter(time) AND {ACCOUNT}
            GROUP BY account ORDER BY pending_now DESC, account"""),
            (0, 16, 24, 7),
            description="Rates over the last 15 minutes of the range; ETA to drain the pending runs at the "
                        "net rate (empty while arrivals keep up with completions)."),
    ),
)

# --------------------------------------------------------------------------- 5. pipeline

PIPELINE = Dashboard(
    uid="runlens-pipeline",
    title="runlens / Pipeline health",
    description="Is the pipeline keeping up: throughput, lag, dead letters, freshness, alerts.",
    time_from="now-1h",
    refresh="30s",
    panels=(
        Panel(1, "Events in / out per second", "timeseries", _sql(f"""
            SELECT t AS time,
                   (sum(stored) + sum(dead)) / $__interval_s AS events_in,
                   sum(stored) / $__interval_s AS events_stored
            FROM (
                SELECT $__timeInterval(ingested_at) AS t, count() AS stored, 0 AS dead
                FROM events WHERE $__timeFilter(ingested_at) AND {ACCOUNT} GROUP BY t
                UNION ALL
                SELECT $__timeInterval(received_at) AS t, 0 AS stored, count() AS dead
                FROM dead_letters WHERE $__timeFilter(received_at) GROUP BY t
            )
            GROUP BY time ORDER BY time"""),
            (0, 0, 12, 8), unit="suffix: events/s", min_interval="10s",
            description="In: records the worker consumed (stored events and dead letters); stored: rows "
                        "written to the events table, by the time they were written."),
        Panel(2, "Consumer lag", "timeseries", _sql("""
            SELECT $__timeInterval(time) AS t, worker, max(value) AS lag
            FROM pipeline_metrics
            WHERE metric = 'consumer_lag' AND $__timeFilter(time)
            GROUP BY t, worker ORDER BY t, worker"""),
            (12, 0, 12, 8), unit="short", min_interval="10s",
            description="Records behind the head of the events topic, as each worker reports it."),
        Panel(3, "Dead-letter rate", "timeseries", _sql("""
            SELECT t AS time, round(100 * sum(dead) / (sum(stored) + sum(dead)), 3) AS dead_letter_pct
            FROM (
                SELECT $__timeInterval(ingested_at) AS t, count() AS stored, 0 AS dead
                FROM events WHERE $__timeFilter(ingested_at) GROUP BY t
                UNION ALL
                SELECT $__timeInterval(received_at) AS t, 0 AS stored, count() AS dead
                FROM dead_letters WHERE $__timeFilter(received_at) GROUP BY t
            )
            GROUP BY time ORDER BY time"""),
            (0, 8, 12, 8), unit="percent", min_interval="1m",
            description="Share of consumed records that were invalid and went to the dead-letter topic."),
        Panel(4, "Event-to-queryable latency (live events)", "timeseries", _sql(f"""
            SELECT $__timeInterval(ingested_at) AS time,
                   quantile(0.5)(dateDiff('millisecond', ts, ingested_at)) AS p50,
                   quantile(0.95)(dateDiff('millisecond', ts, ingested_at)) AS p95,
                   max(dateDiff('millisecond', ts, ingested_at)) AS max
            FROM events
            WHERE $__timeFilter(ingested_at) AND {ACCOUNT}
              AND ts > ingested_at - INTERVAL 1 HOUR AND ts <= ingested_at
            GROUP BY time ORDER BY time"""),
            (12, 8, 12, 8), unit="ms", min_interval="10s",
            description="From the event's own time to the moment its row was written. Only events "
                        "less than an hour old on arrival count: a backfill's age is not latency."),
        Panel(5, "Dead letters by reason", "table", _sql("""
            SELECT splitByString(': ', reason)[1] AS reason, count() AS records,
                   max(received_at) AS last_seen, any(source) AS example_source
            FROM rejected_events
            WHERE $__timeFilter(received_at)
            GROUP BY reason ORDER BY records DESC LIMIT 20"""),
            (0, 16, 12, 8)),
        Panel(6, "Alerts raised", "timeseries", _sql(f"""
            SELECT $__timeInterval(started_at) AS time, kind, count() AS alerts
            FROM alerts
            WHERE $__timeFilter(started_at) AND {ACCOUNT}
            GROUP BY time, kind ORDER BY time, kind"""),
            (12, 16, 12, 8), unit="short", min_interval="1m", bars=True, stacked=True,
            description="Alerts the stream's detectors raised (failure spikes, stuck runs, growing queues)."),
        Panel(7, "Alert timeline", "table", _sql(f"""
            SELECT started_at, resolved_at, state, severity, kind, account_id AS account,
                   subject_name AS subject, summary
            FROM alerts
            WHERE (started_at <= $__toTime AND (resolved_at IS NULL OR resolved_at >= $__fromTime))
              AND {ACCOUNT}
            ORDER BY started_at DESC LIMIT 200"""),
            (0, 24, 24, 8), description="Every alert active at some point in the time range, newest first."),
    ),
)

DASHBOARDS = (OVERVIEW, WORKFLOW, FAILURES, QUEUE, PIPELINE)

# --------------------------------------------------------------------------- alert rules

ALERT_RULES = (
    AlertRule(
        uid="runlens-failure-spike",
        title="Failure spike",
        sql=_sql("""
            SELECT account_id AS account, workflow_id AS workflow, anyLast(workflow_name) AS workflow_name,
                   round(100 * sum(failed) / sum(finished), 2) AS failure_pct
            FROM run_stats_state
            WHERE $__timeFilter(bucket)
            GROUP BY account, workflow
            HAVING sum(finished) >= 20"""),
        window_s=900, op="gt", threshold=20, pending="5m", severity="critical",
        summary="{{ $labels.workflow_name }} ({{ $labels.account }}): {{ $values.A.Value }}% of runs failed "
                "in the last 15 minutes",
        description="More than 20% of the workflow's finished runs failed over 15 minutes, with at least 20 "
                    "finished runs, for 5 minutes in a row.",
        runbook="Open Failures, filter on the workflow: top error code and failing step tell whether it is an "
                "integration outage (replay once it recovers) or a broken version (roll back, then replay).",
        dashboard_uid="runlens-failures", panel_id=4,
    ),
    AlertRule(
        uid="runlens-stuck-runs",
        title="Stuck runs",
        sql=_sql("""
            SELECT account_id AS account, workflow_id AS workflow, count() AS stuck_runs
            FROM runs
            WHERE status = 'running' AND started_at < $__toTime - INTERVAL 1 HOUR
              AND $__timeFilter(started_at)
            GROUP BY account, workflow"""),
        window_s=86400, op="gt", threshold=0, pending="10m", severity="warning",
        summary="{{ $values.A.Value }} run(s) of {{ $labels.workflow }} ({{ $labels.account }}) have been "
                "running for more than an hour",
        description="Runs started in the last day that have not finished an hour after they started.",
        runbook="Check the workflow's delay and webhook steps in Workflow drill-down; stop the stuck runs in "
                "the engine and replay them if the step they hang on was fixed.",
        dashboard_uid="runlens-workflow", panel_id=2,
    ),
    AlertRule(
        uid="runlens-queue-growing",
        title="Queue growing",
        sql=_sql("""
            SELECT account_id AS account,
                   if(argMax(pending, time) > argMin(pending, time), argMax(pending, time), 0) AS growing_pending
            FROM queue_depth
            WHERE $__timeFilter(time)
            GROUP BY account"""),
        window_s=600, op="gt", threshold=50, pending="5m", severity="warning",
        summary="{{ $labels.account }}: {{ $values.A.Value }} runs pending and the queue is still growing",
        description="The account's pending runs grew over the last 10 minutes and more than 50 are waiting.",
        runbook="Open Queue and capacity: if completions dropped, the engine lost workers (scale them up); if "
                "arrivals jumped, a scheduled batch or an import is running (let it drain or raise the limit).",
        dashboard_uid="runlens-queue", panel_id=1,
    ),
    AlertRule(
        uid="runlens-dead-letter-rate",
        title="Dead-letter rate",
        sql=_sql("""
            SELECT round(100 * dead / (stored + dead), 3) AS dead_letter_pct
            FROM (SELECT count() AS stored FROM events WHERE $__timeFilter(ingested_at)) AS e,
                 (SELECT count() AS dead FROM dead_letters WHERE $__timeFilter(received_at)) AS d
            WHERE stored + dead >= 100"""),
        window_s=600, op="gt", threshold=5, pending="5m", severity="warning",
        summary="{{ $values.A.Value }}% of consumed records went to the dead-letter topic in the last 10 minutes",
        description="More than 5% of at least 100 consumed records were invalid.",
        runbook="Open Pipeline health > Dead letters by reason: a new reason after a deploy of the engine means "
                "a contract break (fix the emitter); then re-publish the dead letters' raw lines.",
        dashboard_uid="runlens-pipeline", panel_id=3,
    ),
    AlertRule(
        uid="runlens-pipeline-lag",
        title="Pipeline lag",
        sql=_sql("""
            SELECT worker, max(value) AS lag
            FROM pipeline_metrics
            WHERE metric = 'consumer_lag' AND $__timeFilter(time)
            GROUP BY worker"""),
        window_s=300, op="gt", threshold=10000, pending="5m", severity="critical",
        summary="Worker {{ $labels.worker }} is {{ $values.A.Value }} records behind",
        description="A worker reported a consumer lag above 10,000 records for 5 minutes.",
        runbook="Check the worker logs and ClickHouse health (a failing warehouse makes the worker retry and "
                "stop consuming); add workers up to the number of partitions if it is only load.",
        dashboard_uid="runlens-pipeline", panel_id=2,
    ),
    AlertRule(
        uid="runlens-no-data",
        title="No events ingested",
        sql=_sql("""
            SELECT count() AS events_ingested
            FROM events
            WHERE $__timeFilter(ingested_at)"""),
        window_s=900, op="lt", threshold=1, pending="5m", severity="critical",
        summary="No events reached the warehouse in the last 15 minutes",
        description="The events table received no rows for 15 minutes: producers, Kafka or the worker stopped.",
        runbook="Check that the workers run and consume (consumer group lag), that Kafka is healthy and that the "
                "engine still emits; then look at Pipeline health for when it stopped.",
        dashboard_uid="runlens-pipeline", panel_id=1,
        no_data_state="Alerting", exec_err_state="Alerting",
    ),
    AlertRule(
        uid="runlens-aggregate-drift",
        title="Aggregates drift from the raw events",
        sql=_sql("""
            SELECT account, toFloat64(sum(abs(toInt64(aggregated) - toInt64(raw)))) AS drift_runs
            FROM (
                SELECT account_id AS account, bucket, sum(raw) AS raw, sum(aggregated) AS aggregated
                FROM (
                    SELECT account_id, toStartOfMinute(ts) AS bucket, uniqExact(event_id) AS raw,
                           toUInt64(0) AS aggregated
                    FROM events
                    WHERE type = 'run.finished' AND $__timeFilter(toStartOfMinute(ts))
                    GROUP BY account_id, bucket
                    UNION ALL
                    SELECT account_id, bucket, toUInt64(0), sum(finished)
                    FROM run_stats_state
                    WHERE $__timeFilter(bucket)
                    GROUP BY account_id, bucket
                )
                GROUP BY account, bucket
            )
            GROUP BY account"""),
        window_s=3600, op="gt", threshold=0, pending="15m", severity="warning",
        summary="Finished-run counts of {{ $labels.account }} differ from a recount of the raw events by "
                "{{ $values.A.Value }} over the last hour",
        description="The continuous reconciliation: per account and minute, finished runs in run_stats "
                    "against distinct run.finished events in the raw table (what `runlens reconcile` checks "
                    "against the runs view). Anything but 0 for 15 minutes means an aggregate lost or "
                    "double-counted events.",
        runbook="Run `runlens reconcile --since 2h` to list the buckets; look for worker restarts or warehouse "
                "errors at that time in Pipeline health and the worker log. The raw events are intact: the "
                "minutes can be rebuilt from them.",
        dashboard_uid="runlens-pipeline", panel_id=1,
    ),
)

ALERT_GROUP = "runlens"
ALERT_INTERVAL = "1m"
CONTACT_POINT = "runlens-webhook"
WEBHOOK_URL_ENV = "RUNLENS_GRAFANA_WEBHOOK_URL"
GROUP_BY = ("alertname", "account", "workflow")


def all_panels() -> list[tuple[Dashboard, Panel]]:
    return [(d, p) for d in DASHBOARDS for p in d.panels]


def dashboard(uid: str) -> Dashboard:
    for d in DASHBOARDS:
        if d.uid == uid:
            return d
    raise KeyError(uid)


def panel_options(panel: Panel) -> dict[str, Any]:
    """The renderer-independent display hints of a panel (for tests and the report)."""
    return {"stacked": panel.stacked, "bars": panel.bars, "horizontal": panel.horizontal}
