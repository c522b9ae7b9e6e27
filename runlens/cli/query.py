"""`runlens query`, `runlens stats ...` and `runlens reconcile`: read the warehouse."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from dashboards.stats import Filters, Query
from runlens.cli.common import (
    TIME_FORMS,
    FormatOpt,
    OutputFormat,
    RawCsvOpt,
    check_text,
    err,
    parse_when,
    query_client,
    run_and_report,
    run_query,
    settings_of,
    stats_command,
    write_rows,
)

stats_app = typer.Typer(help="Success rates, durations, bottlenecks, queue depth and alerts.",
                        no_args_is_help=True)


def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="A read-only SQL statement over the runlens views.")],
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
) -> None:
    """Run read-only SQL against the warehouse (through the embedded stack's read endpoint)."""
    run_and_report(ctx, sql, None, format)


def _by(text: str) -> list[str]:
    check_text(text, "--by")
    return [part.strip() for part in text.split(",") if part.strip()]


ALL_FILTERS = ("since", "until", "account", "workflow", "version", "type_", "trigger", "site", "card")
BY_HELP = "Group by dimensions and/or a time grain (see `stats success`)."


@stats_command(stats_app, "success", ALL_FILTERS)
def stats_success(
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, type, trigger, site, card "
                                         "and/or a grain: minute, hour, day, week, month.")] = "workflow",
    *,
    f: Filters,
) -> Query:
    """Runs finished, succeeded, failed, stopped and the success rate."""
    from dashboards import stats

    return stats.success(f, _by(by))


@stats_command(stats_app, "durations", ALL_FILTERS)
def stats_durations(by: Annotated[str, typer.Option(help=BY_HELP)] = "workflow", *, f: Filters) -> Query:
    """Run duration and queue wait percentiles (p50/p90/p95/p99)."""
    from dashboards import stats

    return stats.durations(f, _by(by))


@stats_command(stats_app, "bottlenecks", ALL_FILTERS[:5])
def stats_bottlenecks(
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, step.")] = "workflow,step", *,
    f: Filters,
) -> Query:
    """Steps by share of run time, failure rate, percentiles, delay lateness, version regressions."""
    from dashboards import stats

    return stats.bottlenecks(f, _by(by))


@stats_command(stats_app, "queue", ("since", "until", "account"), since="1d")
def stats_queue(
    by: Annotated[str, typer.Option(help="Time grain: minute, hour, day, week, month.")] = "hour", *, f: Filters,
) -> Query:
    """Pending and running depth, arrivals, completions, utilisation and backlog ETA per account."""
    from dashboards import stats

    return stats.queue(f, check_text(by, "--by"))


@stats_command(stats_app, "peaks", ("since", "account", "workflow"), since="28d")
def stats_peaks(f: Filters) -> Query:
    """Runs per hour of the week (UTC): the peak times."""
    from dashboards import stats

    return stats.peaks(f)


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


@stats_command(stats_app, "alerts", ("since", "account"))
def stats_alerts(
    f: Filters, state: Annotated[AlertState | None, typer.Option(help="Only firing or resolved alerts.")] = None,
) -> Query:
    """Failure spikes, stuck runs and growing queues the stream detected."""
    from dashboards import stats

    return stats.alerts(f, state.value if state else None)


RECONCILE_SQL = """
SELECT account_id, bucket, raw_finished, aggregated_finished, aggregated_finished - raw_finished AS drift
FROM
(
    SELECT account_id, toStartOfMinute(finished_at) AS bucket, count() AS raw_finished
    FROM runs WHERE finished_at IS NOT NULL AND finished_at >= {since:DateTime64(3, 'UTC')}
    GROUP BY account_id, bucket
) AS raw
FULL OUTER JOIN
(
    SELECT account_id, bucket, sum(finished) AS aggregated_finished
    FROM run_stats_state WHERE bucket >= {since:DateTime64(3, 'UTC')}
    GROUP BY account_id, bucket
) AS agg USING (account_id, bucket)
WHERE drift != 0
ORDER BY abs(drift) DESC, bucket
LIMIT 1000
"""


def reconcile(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help=f"Check buckets from this time: {TIME_FORMS}.")] = "7d",
    format: FormatOpt = OutputFormat.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Compare the aggregates with the raw runs per account and minute; exit 3 on any drift.

    A run finished in the `runs` view must be counted once in `run_stats` in the minute it
    finished. Buckets that disagree are listed with the difference (positive: counted more
    than once, negative: missing); schedule it (cron, a Grafana alert on its output) to watch
    for drift continuously."""
    moment = parse_when(since, "--since")
    result = run_query(query_client(settings_of(ctx)), RECONCILE_SQL, {"since": moment})
    rows = result.result_rows
    drift = sum(abs(r[-1]) for r in rows)
    if rows:
        write_rows(list(result.column_names), rows, format, raw_csv=raw_csv)
    err.print(f"drift: {drift} runs in {len(rows)} buckets since {moment:%Y-%m-%d %H:%M} UTC", highlight=False)
    if drift:
        raise typer.Exit(3)
