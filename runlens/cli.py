"""The ``runlens`` command line.

Errors a user can cause (bad arguments, nothing running, broker unreachable) end in one
line on stderr and a non-zero exit code, never a traceback: 2 for bad usage, 1 otherwise.
"""

from __future__ import annotations

import csv
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import orjson
import typer
from typer._click import exceptions as click_errors  # typer vendors click since 0.22
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from runlens.settings import Settings

app = typer.Typer(
    name="runlens",
    help="Streaming analytics for workflow runs: Kafka -> Faust -> ClickHouse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
schema_app = typer.Typer(help="The event contract as JSON Schema.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")

out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A problem the user can fix; printed as one line."""


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(dict)["settings"]


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Streaming analytics for workflow runs. Settings come from RUNLENS_* environment variables."""
    ctx.ensure_object(dict)
    if "settings" not in ctx.obj:
        try:
            ctx.obj["settings"] = Settings()
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise UserError(f"bad setting RUNLENS_{str(first['loc'][0]).upper()}: {first['msg']}") from None


# --------------------------------------------------------------------------- stack


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the embedded stack (broker, worker, warehouse) in the foreground until Ctrl-C."""
    from embedded.stack import EmbeddedStack

    settings = settings_of(ctx)
    with _stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(f"runlens is up. broker: {stack.brokers}  query endpoint: {stack.query_url}")
        out.print(f"logs: {stack.logs}   Ctrl-C to stop.")
        try:
            while True:
                time.sleep(1)
                stack.check_worker()
        except KeyboardInterrupt:
            out.print("stopping...")
    out.print("stopped.")


@app.command(hidden=False)
def worker(ctx: typer.Context) -> None:
    """Run one stream worker (Faust) against the configured broker and warehouse."""
    from runlens.worker import run_worker

    run_worker(settings_of(ctx))


# --------------------------------------------------------------------------- input


@app.command()
def publish(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="NDJSON file of events, or - for standard input.")],
) -> None:
    """Publish an NDJSON file of events; rejected lines are reported and dead-lettered."""
    from embedded.stack import resolve_brokers
    from producers.kafka import CheckedProducer
    from producers.publish import publish_lines

    settings = settings_of(ctx)
    if file == "-":
        stream, source = sys.stdin.buffer, "stdin"
    else:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"no such file: {file}")
        stream, source = path.open("rb"), f"file:{path}"
    producer = CheckedProducer(resolve_brokers(settings))
    with stream:
        report = publish_lines(stream, producer, events_topic=settings.events_topic,
                               dead_letter_topic=settings.dead_letter_topic, source=source,
                               max_event_bytes=settings.max_event_bytes)
    for rejected in report.rejected[:50]:
        err.print(f"line {rejected.line_number}: rejected: {rejected.reason}", highlight=False, soft_wrap=True)
    if len(report.rejected) > 50:
        err.print(f"... and {len(report.rejected) - 50} more rejected lines", highlight=False)
    out.print(f"published {report.published} events, rejected {len(report.rejected)} lines "
              f"(sent to {settings.dead_letter_topic})", highlight=False)


def _workload_options(seed: int, accounts: int, rate: float, backfill_rate: float,
                      spikes: list[str], backlogs: list[str], now: datetime):
    from producers.workload import Backlog, Spike, WorkloadConfig

    try:
        return WorkloadConfig(
            seed=seed, accounts=accounts, live_runs_per_second=rate,
            backfill_runs_per_hour=backfill_rate,
            spikes=tuple(Spike.parse(text, now) for text in spikes),
            backlogs=tuple(Backlog.parse(text, now) for text in backlogs),
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _duration(text: str, option: str) -> timedelta:
    from producers.simulate import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UserError(f"{option}: {exc}") from None


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"--now: invalid time {text!r} (use RFC 3339, e.g. 2026-11-20T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise UserError(f"--now: {text!r} has no timezone (add Z or an offset)")
    return moment.astimezone(timezone.utc)


SeedOpt = Annotated[int, typer.Option(help="Random seed: the same seed gives the same workload.")]
AccountsOpt = Annotated[int, typer.Option(min=1, max=26, help="Number of accounts (tenants).")]
RateOpt = Annotated[float, typer.Option(min=0.01, help="Live runs per second (before seasonality).")]
BackfillRateOpt = Annotated[float, typer.Option(min=0.1, help="Runs per hour during the backfill.")]
SpikeOpt = Annotated[list[str], typer.Option(
    "--spike", help="Failure spike: workflow=ID|NAME,at=TIME|+5m,rate=0.6[,minutes=15]. Repeatable.")]
BacklogOpt = Annotated[list[str], typer.Option(
    "--backlog", help="Capacity drop: at=TIME|+5m,minutes=10[,account=ID][,capacity=0.2]. Repeatable.")]


@app.command()
def simulate(
    ctx: typer.Context,
    seed: SeedOpt = 7,
    accounts: AccountsOpt = 3,
    rate: RateOpt = 5.0,
    duration: Annotated[str, typer.Option(help="Live traffic duration, e.g. 60s, 10m, 2h.")] = "60s",
    backfill: Annotated[str, typer.Option(help="History before now, sent at once, e.g. 30d (0 = none).")] = "0",
    backfill_rate: BackfillRateOpt = 120.0,
    spike: SpikeOpt = [],  # noqa: B006 - typer reads the default
    backlog: BacklogOpt = [],  # noqa: B006
    out_file: Annotated[Optional[Path], typer.Option("--out", help="Write NDJSON here instead of publishing.")] = None,
    no_pace: Annotated[bool, typer.Option("--no-pace", help="Send live events at once, not in real time.")] = False,
    bad_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of invalid lines to mix in.")] = 0.0,
    now: Annotated[Optional[str], typer.Option(help="Pretend the current time is this (RFC 3339).")] = None,
) -> None:
    """Generate a realistic synthetic workload: backfilled history, then live traffic."""
    from producers.simulate import EventSink, run_simulation

    settings = settings_of(ctx)
    moment = _parse_now(now)
    config = _workload_options(seed, accounts, rate, backfill_rate, spike, backlog, moment)
    window = dict(backfill=_duration(backfill, "--backfill"), duration=_duration(duration, "--duration"))
    if out_file is not None:
        with out_file.open("wb") as handle:
            report = run_simulation(config, EventSink(file=handle), now=moment, pace=False,
                                    bad_line_rate=bad_rate, **window)
    else:
        from embedded.stack import resolve_brokers
        from producers.kafka import CheckedProducer

        producer = CheckedProducer(resolve_brokers(settings))
        with _stop_on_signals(), _progress() as progress:
            task = progress.add_task("simulating", total=None)
            report = run_simulation(
                config, EventSink(producer, settings.events_topic), now=moment, pace=not no_pace,
                bad_line_rate=bad_rate,
                on_progress=lambda r, ts: progress.update(
                    task, description=f"{r.events:,} events, {r.runs:,} runs, at {ts:%Y-%m-%d %H:%M}"),
                **window)
    target = out_file or settings.events_topic
    out.print(f"sent {report.events:,} events of {report.runs:,} runs to {target} "
              f"({report.backfill_events:,} backfilled, {report.live_events:,} live) in {report.seconds:.1f}s",
              highlight=False)


def _progress():
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err, transient=True)


@app.command()
def demo(
    ctx: typer.Context,
    seed: SeedOpt = 7,
    accounts: AccountsOpt = 3,
    rate: RateOpt = 5.0,
    duration: Annotated[str, typer.Option(help="Live traffic duration.")] = "60s",
    backfill: Annotated[str, typer.Option(help="History to backfill before the live traffic.")] = "3d",
    backfill_rate: BackfillRateOpt = 400.0,
) -> None:
    """Start the embedded stack, replay a realistic workload, print what happened, stop."""
    import shutil

    from embedded.stack import EmbeddedStack
    from producers.kafka import CheckedProducer
    from producers.simulate import EventSink, run_simulation
    from producers.workload import Spike, catalog

    base = settings_of(ctx)
    settings = base.model_copy(update={"data_dir": (base.data_dir / "demo").resolve()})
    shutil.rmtree(settings.data_dir, ignore_errors=True)
    moment = datetime.now(timezone.utc)
    config = _workload_options(seed, accounts, rate, backfill_rate, [], [], moment)
    spiked = catalog(config)[0]
    config = config.__class__(**{**config.__dict__, "spikes": (
        Spike(workflow=spiked["workflow_id"], at=moment + timedelta(seconds=15), rate=0.7, minutes=0.5),)})
    window = dict(backfill=_duration(backfill, "--backfill"), duration=_duration(duration, "--duration"))
    with _stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(f"[bold]runlens demo[/] - broker {stack.brokers}, warehouse {settings.embedded_warehouse_path}")
        out.print(f"backfilling {backfill} of history, then {duration} of live traffic "
                  f"(failure spike on {spiked['name']!r} 15s in)...")
        producer = CheckedProducer(stack.brokers)
        with _progress() as progress:
            task = progress.add_task("simulating", total=None)
            report = run_simulation(
                config, EventSink(producer, settings.events_topic), now=moment, bad_line_rate=0.0005,
                on_progress=lambda r, ts: progress.update(
                    task, description=f"{r.events:,} events, {r.runs:,} runs, event time {ts:%a %H:%M}"),
                **window)
            progress.update(task, description="waiting for the worker to catch up")
            producer.close()
            lag = _wait_caught_up(stack)
        out.print(f"sent {report.events:,} events of {report.runs:,} runs (and {report.bad_lines} bad lines) "
                  f"in {report.seconds:.0f}s; consumer lag now {lag}", highlight=False)
        _print_summary(settings, stack.query_url)
        report_path = _write_demo_report(settings, stack.query_url, moment - window["backfill"],
                                         moment + window["duration"] + timedelta(minutes=5))
        out.print(f"report: {report_path}")
        out.print(f"worker log: {stack.logs / 'worker.log'}")
    out.print("stack stopped. Run `runlens up` to keep one running and query it with `runlens query`.")


def _write_demo_report(settings: Settings, query_url: str, since: datetime, until: datetime) -> Path:
    """The dashboards' panels over the demo's window as one HTML page (see `runlens report`)."""
    from runlens.grafana_cmd import write_report
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database)
    return write_report(client, settings.data_dir / "report.html", since, until,
                        warn=lambda text: err.print(text, highlight=False))


def _wait_caught_up(stack, timeout: float = 600.0) -> int:
    from producers.kafka import consumer_lag

    s = stack.settings
    deadline = time.monotonic() + timeout
    lag = -1
    while time.monotonic() < deadline:
        stack.check_worker()
        lag = consumer_lag(stack.brokers, s.consumer_group, [s.events_topic, s.dead_letter_topic])
        if lag == 0:
            break
        time.sleep(0.5)
    return lag


def _print_summary(settings: Settings, query_url: str) -> None:
    from dashboards.summary import run_panels
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database)
    for panel, columns, rows in run_panels(client):
        if not rows:
            out.print(f"[bold]{panel.title}[/]: none")
            continue
        table = Table(*columns, title=panel.title, title_justify="left", title_style="bold")
        for row in rows:
            table.add_row(*("" if v is None else str(_cell(v)) for v in row))
        out.print(table)


# --------------------------------------------------------------------------- output


def _query_client(settings: Settings):
    from embedded.stack import resolve_query_url
    from sinks.clickhouse import connect

    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    return connect(resolve_query_url(settings), database=settings.database, password=password)


@app.command()
def query(
    ctx: typer.Context,
    sql: Annotated[str, typer.Argument(help="A read-only SQL statement over the runlens views.")],
    format: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
) -> None:
    """Run read-only SQL against the warehouse (through the embedded stack's read endpoint)."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    client = _query_client(settings_of(ctx))
    try:
        result = client.query(sql)
    except DatabaseError as exc:
        raise UserError(_clickhouse_message(exc)) from None
    write_rows(list(result.column_names), result.result_rows, format)


def _clickhouse_message(exc: Exception) -> str:
    text = str(exc)
    marker = "DB::Exception: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return "query failed: " + text.split("\n")[0].split(". (")[0].strip()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def write_rows(columns: list[str], rows, fmt: OutputFormat, stream=None) -> None:
    """Print rows as a table, CSV (RFC 4180 quoting) or JSON lines."""
    stream = stream or sys.stdout
    if fmt is OutputFormat.csv:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else _cell(v) for v in row])
    elif fmt is OutputFormat.json:
        for row in rows:
            stream.write(orjson.dumps(dict(zip(columns, map(_cell, row))), default=str).decode() + "\n")
    else:
        table = Table(*columns, show_lines=False)
        for row in rows:
            table.add_row(*("" if v is None else str(_cell(v)) for v in row))
        out.print(table)


stats_app = typer.Typer(help="Success rates, durations, bottlenecks, queue depth and alerts.",
                        no_args_is_help=True)
app.add_typer(stats_app, name="stats")


def _since(text: str | None) -> datetime | None:
    """'24h' / '7d' (ago) or an RFC 3339 time."""
    if text is None:
        return None
    from producers.simulate import parse_duration

    try:
        return datetime.now(timezone.utc) - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"invalid time {text!r} (use a duration like 24h or 7d, or RFC 3339)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


SinceOpt = Annotated[Optional[str], typer.Option(help="From this time: 24h, 7d (ago) or RFC 3339.")]
UntilOpt = Annotated[Optional[str], typer.Option(help="Until this time: duration ago or RFC 3339.")]
AccountFilter = Annotated[Optional[str], typer.Option(help="Only this account.")]
WorkflowFilter = Annotated[Optional[str], typer.Option(help="Only this workflow id.")]
VersionFilter = Annotated[Optional[int], typer.Option(help="Only this workflow version.")]
TypeFilter = Annotated[Optional[str], typer.Option("--type", help="Workflow type: card, site, contact, survey, integration.")]
TriggerFilter = Annotated[Optional[str], typer.Option(help="Trigger: manual, automatic, api, scheduled.")]
SiteFilter = Annotated[Optional[str], typer.Option(help="Only this site id.")]
CardFilter = Annotated[Optional[str], typer.Option(help="Only this card id.")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")]


def _by(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _filters(since, until, account, workflow, version, type_, trigger, site, card):
    from dashboards.stats import Filters
    from schemas.events import Trigger, WorkflowType

    if type_ is not None and type_ not in {t.value for t in WorkflowType}:
        raise UserError(f"--type: unknown workflow type {type_!r} (card, site, contact, survey, integration)")
    if trigger is not None and trigger not in {t.value for t in Trigger}:
        raise UserError(f"--trigger: unknown trigger {trigger!r} (manual, automatic, api, scheduled)")
    return Filters(since=_since(since), until=_since(until), account=account, workflow=workflow,
                   version=version, type=type_, trigger=trigger, site=site, card=card)


def _run_stats_query(ctx: typer.Context, build, fmt: OutputFormat) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from dashboards.stats import StatsError

    try:
        query_ = build()
    except StatsError as exc:
        raise UserError(str(exc)) from None
    client = _query_client(settings_of(ctx))
    try:
        result = client.query(query_.sql, parameters=query_.params)
    except DatabaseError as exc:
        raise UserError(_clickhouse_message(exc)) from None
    write_rows(list(result.column_names), result.result_rows, fmt)


@stats_app.command("success")
def stats_success(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, type, trigger, site, card "
                                         "and/or a grain: minute, hour, day, week, month.")] = "workflow",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None, type_: TypeFilter = None,
    trigger: TriggerFilter = None, site: SiteFilter = None, card: CardFilter = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Runs finished, succeeded, failed, stopped and the success rate."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, type_, trigger, site, card)
    _run_stats_query(ctx, lambda: stats.success(f, _by(by)), format)


@stats_app.command("durations")
def stats_durations(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by dimensions and/or a time grain (see `stats success`).")] = "workflow",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None, type_: TypeFilter = None,
    trigger: TriggerFilter = None, site: SiteFilter = None, card: CardFilter = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Run duration and queue wait percentiles (p50/p90/p95/p99)."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, type_, trigger, site, card)
    _run_stats_query(ctx, lambda: stats.durations(f, _by(by)), format)


@stats_app.command("bottlenecks")
def stats_bottlenecks(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, step.")] = "workflow,step",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Steps by share of run time, failure rate, percentiles, delay lateness, version regressions."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.bottlenecks(f, _by(by)), format)


@stats_app.command("queue")
def stats_queue(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Time grain: minute, hour, day, week, month.")] = "hour",
    since: SinceOpt = "1d", until: UntilOpt = None, account: AccountFilter = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Pending and running depth, arrivals, completions, utilisation and backlog ETA per account."""
    from dashboards import stats

    f = _filters(since, until, account, None, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.queue(f, by), format)


@stats_app.command("peaks")
def stats_peaks(
    ctx: typer.Context,
    since: SinceOpt = "28d", account: AccountFilter = None, workflow: WorkflowFilter = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Runs per hour of the week (UTC): the peak times."""
    from dashboards import stats

    f = _filters(since, None, account, workflow, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.peaks(f), format)


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


@stats_app.command("alerts")
def stats_alerts(
    ctx: typer.Context,
    since: SinceOpt = "7d", account: AccountFilter = None,
    state: Annotated[Optional[AlertState], typer.Option(help="Only firing or resolved alerts.")] = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Failure spikes, stuck runs and growing queues the stream detected."""
    from dashboards import stats

    f = _filters(since, None, account, None, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.alerts(f, state.value if state else None), format)


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


@app.command()
def reconcile(
    ctx: typer.Context,
    since: Annotated[str, typer.Option(help="Check buckets from this time: 24h, 7d (ago) or RFC 3339.")] = "7d",
    format: Annotated[OutputFormat, typer.Option("--format", "-f")] = OutputFormat.table,
) -> None:
    """Compare the aggregates with the raw runs per account and minute; exit 3 on any drift.

    A run finished in the `runs` view must be counted once in `run_stats` in the minute it
    finished. Buckets that disagree are listed with the difference (positive: counted more
    than once, negative: missing); schedule it (cron, a Grafana alert on its output) to watch
    for drift continuously."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    moment = _since(since)
    client = _query_client(settings_of(ctx))
    try:
        result = client.query(RECONCILE_SQL, parameters={"since": moment})
    except DatabaseError as exc:
        raise UserError(_clickhouse_message(exc)) from None
    rows = result.result_rows
    drift = sum(abs(r[-1]) for r in rows)
    if rows:
        write_rows(list(result.column_names), rows, format)
    err.print(f"drift: {drift} runs in {len(rows)} buckets since {moment:%Y-%m-%d %H:%M} UTC", highlight=False)
    if drift:
        raise typer.Exit(3)


@schema_app.command("export")
def schema_export(
    output: Annotated[Optional[Path], typer.Option("--out", "-o", help="File to write; stdout if omitted.")] = None,
) -> None:
    """Write the JSON Schema of one event."""
    from schemas import event_json_schema

    text = orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        out.print(f"wrote {output}")


# --------------------------------------------------------------------------- plumbing


class _stop_on_signals:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so `with` blocks unwind and children
    are stopped (SIGINT explicitly: a shell's background job starts with it ignored)."""

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self):
        self._previous = {sig: signal.signal(sig, self._raise) for sig in self._SIGNALS}
        return self

    @staticmethod
    def _raise(signum, frame) -> NoReturn:
        raise KeyboardInterrupt

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"runlens: error: {message}", highlight=False, soft_wrap=True, markup=False)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning expected failures into one-line errors."""
    from embedded.stack import StackNotRunning
    from producers.kafka import BrokerUnavailable, DeliveryFailed
    from sinks.clickhouse import WarehouseError

    try:
        code = app(args=argv, prog_name="runlens", standalone_mode=False)
        if isinstance(code, int) and code:   # typer.Exit(n) comes back as a return value here
            raise SystemExit(code)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail("aborted", 130)
    except click_errors.NoArgsIsHelpError:
        raise SystemExit(2) from None
    except click_errors.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message().replace("\n", " ").replace("Value error, ", "") + hint, 2)
    except click_errors.ClickException as exc:
        _fail(exc.format_message(), exc.exit_code or 1)
    except (UserError, StackNotRunning, BrokerUnavailable, DeliveryFailed, WarehouseError) as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        raise SystemExit(0) from None


def _register_command_groups() -> None:
    """Command groups that live in their own modules."""
    from runlens.bench import register as register_bench
    from runlens.dlq import register as register_dlq
    from runlens.explore import register as register_explorer
    from runlens.grafana_cmd import register as register_grafana

    register_grafana(app)
    register_explorer(app)
    register_bench(app)
    register_dlq(app)


_register_command_groups()
