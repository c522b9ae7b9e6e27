"""The ``runlens`` command line.

Errors a user can cause (bad arguments, nothing running, broker unreachable) end in one
line on stderr and a non-zero exit code, never a traceback: 2 for bad usage, 1 otherwise.
"""

from __future__ import annotations

import csv
import logging
import re
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
from rich.text import Text

from runlens.settings import Settings, redact_text, redact_url

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
    """A problem the user can fix; printed as one line, exit code 1."""


class BadArgument(UserError):
    """A malformed or out-of-range argument, found before anything runs: exit code 2, like the
    usage errors typer reports itself. (Code 1 is for what only running finds: a missing file,
    nothing running, an unreachable service, a failed query.)"""


class OutputFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


# --------------------------------------------------------------------------- safe output

# ECMA-48 escape sequences: CSI (ESC [ or 8-bit 0x9B), OSC/DCS/SOS/PM/APC strings up to BEL or ST,
# and the two- and three-byte ESC forms. Removed whole, so no fragment of one reaches a terminal.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
                      r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
                      r"|\x1b[ -/]*[0-~]")
# C0 and C1 controls, DEL, and Unicode's Bidi_Control characters (the embeddings, overrides and
# isolates of "Trojan Source", and the marks).
_CONTROLS = [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F,
             *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_MULTILINE = dict.fromkeys(c for c in _CONTROLS if chr(c) not in "\n\t")
_ONE_LINE = {**dict.fromkeys(_CONTROLS), ord("\n"): " ", ord("\t"): " ", ord("\r"): " "}


def printable(text: str, *, one_line: bool = False) -> str:
    """``text`` (event data, anything a user or engine wrote) safe to print on a terminal: escape
    sequences and control characters removed (newline and tab kept, or turned into spaces with
    ``one_line``), bidi overrides removed. Print it with ``markup=False`` or as a rich ``Text`` so
    ``[bold]`` in data stays literal."""
    return _ESCAPES.sub("", text).translate(_ONE_LINE if one_line else _MULTILINE)


CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CSV_GUARD_HELP = ("CSV cells of text starting with = + - @ tab or CR get a leading ' so spreadsheets "
                  "do not run them as formulas (numbers are left alone); --raw-csv turns this off.")


def csv_safe(value: Any) -> Any:
    """A CSV cell that spreadsheets will not evaluate (OWASP "CSV injection"): text starting with
    = + - @ tab or CR gets a leading ``'``. Only text: a number such as -5 stays a number."""
    if isinstance(value, str) and value.startswith(CSV_TRIGGERS):
        return "'" + value
    return value


RawCsvOpt = Annotated[bool, typer.Option(
    "--raw-csv", help="CSV: write text cells exactly as stored, without the ' guard against spreadsheet "
                      "formulas (= + - @ tab CR).")]


# --------------------------------------------------------------------------- argument checks
#
# Documented ranges (README, Configuration): every argument at most 65,536 characters, not empty,
# no control characters but tab, newline and CR; ids, names and filter values at most 512
# characters (the event contract's limit); paths at most 4,096; durations at most 36,500 days;
# times between 1900-01-01 and 2299-12-31 (ClickHouse's DateTime64); numbers as each option says.

MAX_ARGUMENT_CHARS = 65_536
MAX_VALUE_CHARS = 512
MAX_PATH_CHARS = 4096
TIME_MIN = datetime(1900, 1, 1, tzinfo=timezone.utc)
TIME_MAX = datetime(2300, 1, 1, tzinfo=timezone.utc)   # exclusive
_ARGUMENT_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def shown(text: str, limit: int = 40) -> str:
    """A user's value for an error message: printable, shortened, quoted."""
    text = printable(text, one_line=True)
    return repr(text if len(text) <= limit else text[:limit - 3] + "...")


def check_argv(argv: list[str]) -> None:
    """BadArgument for an argument that no option accepts: empty, longer than 65,536 characters,
    or holding a control character other than tab, newline and CR (NUL included)."""
    for number, arg in enumerate(argv, start=1):
        previous = argv[number - 2] if number > 1 else ""
        if arg.startswith("--") and "=" in arg:
            what = arg.split("=", 1)[0]
        elif previous.startswith("-") and "=" not in previous and not arg.startswith("-"):
            what = printable(previous, one_line=True)
        else:
            what = f"argument {number}"
        if arg == "" or (arg.startswith("--") and arg.endswith("=") and arg.count("=") == 1):
            raise BadArgument(f"{what}: empty value")
        if len(arg) > MAX_ARGUMENT_CHARS:
            raise BadArgument(f"{what}: longer than {MAX_ARGUMENT_CHARS:,} characters")
        control = _ARGUMENT_CONTROLS.search(arg)
        if control:
            raise BadArgument(f"{what}: contains the control character U+{ord(control.group()):04X}")


def _param_name(param) -> str:
    if getattr(param, "param_type_name", "") == "option":
        return param.opts[0]
    return getattr(param, "metavar", None) or param.name.upper()


def check_text(value: str, what: str, limit: int = MAX_VALUE_CHARS) -> str:
    """``value`` if it is 1..``limit`` characters and not blank; BadArgument naming ``what`` otherwise."""
    if not value.strip():
        raise BadArgument(f"{what}: must not be empty")
    if len(value) > limit:
        raise BadArgument(f"{what}: at most {limit:,} characters, not {len(value):,}")
    return value


def text_values(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Callback of free-text options (ids, names, filter values): each value, and each
    comma-separated part of a repeatable one, 1..512 characters."""
    if value is None:
        return value
    what = _param_name(param)
    if isinstance(value, (list, tuple)):
        for item in value:
            check_text(item, what, MAX_ARGUMENT_CHARS)
            for part in item.split(","):
                if part.strip():
                    check_text(part, what)
    else:
        check_text(value, what)
    return value


def path_value(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Callback of file and folder options: 1..4,096 characters."""
    if value is not None:
        check_text(value, _param_name(param), MAX_PATH_CHARS)
    return value


def parse_when(text: str, option: str = "time", now: datetime | None = None) -> datetime:
    """A point in time from the command line: now, today, yesterday, a duration ago (90s, 24h, 7d,
    2w), a date or an RFC 3339 time (naive means UTC), in ASCII, from 1900-01-01 to 2299-12-31.
    BadArgument otherwise."""
    from dashboards.sqllib import QueryError, parse_time
    from producers.simulate import DurationOutOfRange, parse_duration

    now = now or datetime.now(timezone.utc)
    check_text(text, option, 64)
    if not text.isascii():
        raise BadArgument(f"{option}: invalid time {shown(text)} (use ASCII digits: a duration like 24h or 7d, "
                          "a date or RFC 3339)")
    try:
        moment = now - parse_duration(text)
    except DurationOutOfRange as exc:
        raise BadArgument(f"{option}: {exc}") from None
    except ValueError:
        try:
            moment = parse_time(text, now, option)
        except QueryError as exc:
            raise BadArgument(str(exc)) from None
        except OverflowError:
            raise BadArgument(f"{option}: {shown(text)} is out of range") from None
    if not TIME_MIN <= moment < TIME_MAX:
        raise BadArgument(f"{option}: {shown(text)} is outside 1900-01-01 .. 2299-12-31")
    return moment


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
    _SECRETS.update(ctx.obj["settings"].secrets())


_SECRETS: set[str] = set()   # the settings' passwords, scrubbed from every error line (_fail)


# --------------------------------------------------------------------------- stack


@app.command()
def up(ctx: typer.Context) -> None:
    """Start the embedded stack (broker, worker, warehouse) in the foreground until Ctrl-C."""
    from embedded.stack import EmbeddedStack

    settings = settings_of(ctx)
    with _stop_on_signals(), EmbeddedStack(settings) as stack:
        out.print(f"runlens is up. broker: {redact_text(stack.brokers)}  query endpoint: "
                  f"{redact_url(stack.query_url)}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"logs: {printable(str(stack.logs))}   Ctrl-C to stop.", markup=False, highlight=False,
                  soft_wrap=True)
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
    file: Annotated[str, typer.Argument(help="NDJSON file of events, or - for standard input.",
                                        callback=path_value)],
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
            raise UserError(f"no such file: {printable(file, one_line=True)}")
        stream, source = path.open("rb"), f"file:{path}"
    producer = CheckedProducer(resolve_brokers(settings))
    with stream:
        report = publish_lines(stream, producer, events_topic=settings.events_topic,
                               dead_letter_topic=settings.dead_letter_topic, source=source,
                               max_event_bytes=settings.max_event_bytes,
                               max_clock_skew_seconds=settings.max_clock_skew_seconds)
    for rejected in report.rejected[:50]:   # a reason may quote the line: printable, no markup
        err.print(f"line {rejected.line_number}: rejected: {printable(rejected.reason, one_line=True)}",
                  highlight=False, soft_wrap=True, markup=False)
    if len(report.rejected) > 50:
        err.print(f"... and {len(report.rejected) - 50} more rejected lines", highlight=False)
    out.print(f"published {report.published} events, rejected {len(report.rejected)} lines "
              f"(sent to {settings.dead_letter_topic})", highlight=False)


def _workload_options(seed: int, accounts: int, rate: float, backfill_rate: float,
                      spikes: list[str], backlogs: list[str], now: datetime):
    from producers.workload import Backlog, Spike, WorkloadConfig

    def parse(option: str, kind, texts: list[str]) -> tuple:
        parsed = []
        for text in texts:
            check_text(text, option)
            if not text.isascii():
                raise BadArgument(f"{option}: {shown(text)} is not ASCII (workflow ids and names of the "
                                  "simulated catalog, ASCII digits)")
            try:
                parsed.append(kind.parse(text, now))
            except ValueError as exc:
                reason = str(exc).removeprefix(f"{option[2:]}: ")   # workload's messages name the kind too
                raise BadArgument(f"{option}: {printable(reason, one_line=True)}") from None
            except OverflowError:
                raise BadArgument(f"{option}: {shown(text)} is out of range (times 1..9999 AD)") from None
        return tuple(parsed)

    spiked, backlogged = parse("--spike", Spike, spikes), parse("--backlog", Backlog, backlogs)
    try:
        return WorkloadConfig(seed=seed, accounts=accounts, live_runs_per_second=rate,
                              backfill_runs_per_hour=backfill_rate, spikes=spiked, backlogs=backlogged)
    except ValueError as exc:
        raise BadArgument(printable(str(exc), one_line=True)) from None


def _duration(text: str, option: str) -> timedelta:
    """A duration option (90s, 10m, 2h, 30d; at most 36,500 days); BadArgument otherwise."""
    from producers.simulate import parse_duration

    try:
        return parse_duration(check_text(text, option, 64))
    except ValueError as exc:
        raise BadArgument(f"{option}: {printable(str(exc), one_line=True)}") from None


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(timezone.utc)
    check_text(text, "--now", 64)
    try:
        if not text.isascii():
            raise ValueError(text)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadArgument(f"--now: invalid time {shown(text)} (use RFC 3339, e.g. 2026-11-20T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise BadArgument(f"--now: {shown(text)} has no timezone (add Z or an offset)")
    if not TIME_MIN <= moment < TIME_MAX:
        raise BadArgument(f"--now: {shown(text)} is outside 1900-01-01 .. 2299-12-31")
    return moment.astimezone(timezone.utc)


SeedOpt = Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Random seed (0..2^63-1): the same seed gives "
                                                               "the same workload.")]
AccountsOpt = Annotated[int, typer.Option(min=1, max=26, help="Number of accounts (tenants), 1..26.")]
RateOpt = Annotated[float, typer.Option(min=0.01, max=10_000, help="Live runs per second (before seasonality), "
                                                                   "0.01..10,000.")]
BackfillRateOpt = Annotated[float, typer.Option(min=0.1, max=1_000_000, help="Runs per hour during the backfill, "
                                                                              "0.1..1,000,000.")]
SpikeOpt = Annotated[list[str], typer.Option(
    "--spike", help="Failure spike: workflow=ID|NAME,at=TIME|+5m,rate=0.6[,minutes=15]. Repeatable.")]
BacklogOpt = Annotated[list[str], typer.Option(
    "--backlog", help="Capacity drop: at=TIME|+5m,minutes=10[,account=ID][,capacity=0.2]. Repeatable.")]
DURATION_HELP = " At most 36,500 days."


@app.command()
def simulate(
    ctx: typer.Context,
    seed: SeedOpt = 7,
    accounts: AccountsOpt = 3,
    rate: RateOpt = 5.0,
    duration: Annotated[str, typer.Option(help="Live traffic duration, e.g. 60s, 10m, 2h." + DURATION_HELP)] = "60s",
    backfill: Annotated[str, typer.Option(help="History before now, sent at once, e.g. 30d (0 = none)."
                                               + DURATION_HELP)] = "0",
    backfill_rate: BackfillRateOpt = 120.0,
    spike: SpikeOpt = [],  # noqa: B006 - typer reads the default
    backlog: BacklogOpt = [],  # noqa: B006
    out_path: Annotated[Optional[str], typer.Option("--out", help="Write NDJSON here instead of publishing.",
                                                    callback=path_value)] = None,
    no_pace: Annotated[bool, typer.Option("--no-pace", help="Send live events at once, not in real time.")] = False,
    bad_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of invalid lines to mix in.")] = 0.0,
    now: Annotated[Optional[str], typer.Option(help="Pretend the current time is this (RFC 3339, "
                                                    "1900..2299).")] = None,
) -> None:
    """Generate a realistic synthetic workload: backfilled history, then live traffic."""
    from producers.simulate import EventSink, run_simulation

    settings = settings_of(ctx)
    out_file = Path(out_path) if out_path is not None else None
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
    target = printable(str(out_file or settings.events_topic), one_line=True)
    out.print(f"sent {report.events:,} events of {report.runs:,} runs to {target} "
              f"({report.backfill_events:,} backfilled, {report.live_events:,} live) in {report.seconds:.1f}s",
              highlight=False, markup=False)


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
    duration: Annotated[str, typer.Option(help="Live traffic duration." + DURATION_HELP)] = "60s",
    backfill: Annotated[str, typer.Option(help="History to backfill before the live traffic." + DURATION_HELP)] = "3d",
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
        out.print(Text.assemble(("runlens demo", "bold"), f" - broker {redact_text(stack.brokers)}, warehouse "
                                f"{redact_url(settings.worker_dsn)}"))
        out.print(f"backfilling {backfill} of history, then {duration} of live traffic "
                  f"(failure spike on {spiked['name']!r} 15s in)...", markup=False, highlight=False)
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
        _print_summary(settings, stack.reader_dsn)
        report_path = _write_demo_report(settings, stack.reader_dsn, moment - window["backfill"],
                                         moment + window["duration"] + timedelta(minutes=5))
        out.print(f"report: {printable(str(report_path))}", markup=False, highlight=False, soft_wrap=True)
        out.print(f"worker log: {printable(str(stack.logs / 'worker.log'))}", markup=False, highlight=False,
                  soft_wrap=True)
    out.print("stack stopped. Run `runlens up` to keep one running and query it with `runlens query`.")


def _write_demo_report(settings: Settings, query_url: str, since: datetime, until: datetime) -> Path:
    """The dashboards' panels over the demo's window as one HTML page (see `runlens report`)."""
    from runlens.grafana_cmd import write_report
    from sinks.clickhouse import connect

    client = connect(query_url, database=settings.database, readonly=True)
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

    client = connect(query_url, database=settings.database, readonly=True)
    for panel, columns, rows in run_panels(client):
        if not rows:
            out.print(f"[bold]{panel.title}[/]: none")
            continue
        table = Table(*columns, title=panel.title, title_justify="left", title_style="bold")
        for row in rows:
            table.add_row(*(Text(printable("" if v is None else str(_cell(v)))) for v in row))
        out.print(table)


# --------------------------------------------------------------------------- output


def _query_client(settings: Settings):
    """A client that cannot write: the embedded read endpoint with the stack file's credentials,
    or a server with ``readonly=1`` on every query (``embedded.stack.resolve_reader``)."""
    from embedded.stack import resolve_reader

    return resolve_reader(settings).connect(settings.database)


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
    return "query failed: " + redact_text(text.split("\n")[0].split(". (")[0].strip(), _SECRETS)


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def write_rows(columns: list[str], rows, fmt: OutputFormat, stream=None, *, raw_csv: bool = False) -> None:
    """Print rows as a table, CSV (RFC 4180 quoting) or JSON lines. The table is for a terminal:
    every cell made ``printable`` and never read as markup. CSV text cells go through ``csv_safe``
    unless ``raw_csv``; CSV and JSON otherwise carry the values as stored."""
    stream = stream or sys.stdout
    if fmt is OutputFormat.csv:
        cell = _cell if raw_csv else (lambda v: csv_safe(_cell(v)))
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([cell(c) for c in columns])
        for row in rows:
            writer.writerow(["" if v is None else cell(v) for v in row])
    elif fmt is OutputFormat.json:
        for row in rows:
            stream.write(orjson.dumps(dict(zip(columns, map(_cell, row))), default=str).decode() + "\n")
    else:
        table = Table(show_lines=False)
        for column in columns:
            table.add_column(Text(printable(str(column))))
        for row in rows:
            table.add_row(*(Text(printable("" if v is None else str(_cell(v)))) for v in row))
        out.print(table)


stats_app = typer.Typer(help="Success rates, durations, bottlenecks, queue depth and alerts.",
                        no_args_is_help=True)
app.add_typer(stats_app, name="stats")


def _since(text: str | None, option: str = "time") -> datetime | None:
    """None, or the time ``parse_when`` reads from ``text``."""
    return None if text is None else parse_when(text, option)


TIME_FORMS = "now, today, yesterday, a duration ago (24h, 7d), a date or RFC 3339; 1900..2299"
SinceOpt = Annotated[Optional[str], typer.Option(help=f"From this time: {TIME_FORMS}.")]
UntilOpt = Annotated[Optional[str], typer.Option(help="Until this time (same forms as --since).")]
AccountFilter = Annotated[Optional[str], typer.Option(help="Only this account.", callback=text_values)]
WorkflowFilter = Annotated[Optional[str], typer.Option(help="Only this workflow id.", callback=text_values)]
VersionFilter = Annotated[Optional[int], typer.Option(min=0, max=2**32 - 1, help="Only this workflow version.")]
TypeFilter = Annotated[Optional[str], typer.Option("--type", help="Workflow type: card, site, contact, survey, integration.")]
TriggerFilter = Annotated[Optional[str], typer.Option(help="Trigger: manual, automatic, api, scheduled.")]
SiteFilter = Annotated[Optional[str], typer.Option(help="Only this site id.", callback=text_values)]
CardFilter = Annotated[Optional[str], typer.Option(help="Only this card id.", callback=text_values)]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format. " + CSV_GUARD_HELP)]


def _by(text: str) -> list[str]:
    check_text(text, "--by")
    return [part.strip() for part in text.split(",") if part.strip()]


def _filters(since, until, account, workflow, version, type_, trigger, site, card):
    from dashboards.stats import Filters
    from schemas.events import Trigger, WorkflowType

    if type_ is not None and type_ not in {t.value for t in WorkflowType}:
        raise BadArgument(f"--type: unknown workflow type {shown(type_)} (card, site, contact, survey, integration)")
    if trigger is not None and trigger not in {t.value for t in Trigger}:
        raise BadArgument(f"--trigger: unknown trigger {shown(trigger)} (manual, automatic, api, scheduled)")
    start, end = _since(since, "--since"), _since(until, "--until")
    if start is not None and end is not None and start >= end:
        raise BadArgument("the date range is empty: --since must be before --until")
    return Filters(since=start, until=end, account=account, workflow=workflow,
                   version=version, type=type_, trigger=trigger, site=site, card=card)


def _run_stats_query(ctx: typer.Context, build, fmt: OutputFormat, raw_csv: bool = False) -> None:
    from clickhouse_connect.driver.exceptions import DatabaseError

    from dashboards.stats import StatsError

    try:
        query_ = build()
    except StatsError as exc:
        raise BadArgument(printable(str(exc), one_line=True)) from None
    client = _query_client(settings_of(ctx))
    try:
        result = client.query(query_.sql, parameters=query_.params)
    except DatabaseError as exc:
        raise UserError(_clickhouse_message(exc)) from None
    write_rows(list(result.column_names), result.result_rows, fmt, raw_csv=raw_csv)


@stats_app.command("success")
def stats_success(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, type, trigger, site, card "
                                         "and/or a grain: minute, hour, day, week, month.")] = "workflow",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None, type_: TypeFilter = None,
    trigger: TriggerFilter = None, site: SiteFilter = None, card: CardFilter = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Runs finished, succeeded, failed, stopped and the success rate."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, type_, trigger, site, card)
    _run_stats_query(ctx, lambda: stats.success(f, _by(by)), format, raw_csv)


@stats_app.command("durations")
def stats_durations(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by dimensions and/or a time grain (see `stats success`).")] = "workflow",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None, type_: TypeFilter = None,
    trigger: TriggerFilter = None, site: SiteFilter = None, card: CardFilter = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Run duration and queue wait percentiles (p50/p90/p95/p99)."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, type_, trigger, site, card)
    _run_stats_query(ctx, lambda: stats.durations(f, _by(by)), format, raw_csv)


@stats_app.command("bottlenecks")
def stats_bottlenecks(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Group by: account, workflow, version, step.")] = "workflow,step",
    since: SinceOpt = "7d", until: UntilOpt = None, account: AccountFilter = None,
    workflow: WorkflowFilter = None, version: VersionFilter = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Steps by share of run time, failure rate, percentiles, delay lateness, version regressions."""
    from dashboards import stats

    f = _filters(since, until, account, workflow, version, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.bottlenecks(f, _by(by)), format, raw_csv)


@stats_app.command("queue")
def stats_queue(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Time grain: minute, hour, day, week, month.")] = "hour",
    since: SinceOpt = "1d", until: UntilOpt = None, account: AccountFilter = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Pending and running depth, arrivals, completions, utilisation and backlog ETA per account."""
    from dashboards import stats

    f = _filters(since, until, account, None, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.queue(f, check_text(by, "--by")), format, raw_csv)


@stats_app.command("peaks")
def stats_peaks(
    ctx: typer.Context,
    since: SinceOpt = "28d", account: AccountFilter = None, workflow: WorkflowFilter = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Runs per hour of the week (UTC): the peak times."""
    from dashboards import stats

    f = _filters(since, None, account, workflow, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.peaks(f), format, raw_csv)


class AlertState(StrEnum):
    firing = "firing"
    resolved = "resolved"


@stats_app.command("alerts")
def stats_alerts(
    ctx: typer.Context,
    since: SinceOpt = "7d", account: AccountFilter = None,
    state: Annotated[Optional[AlertState], typer.Option(help="Only firing or resolved alerts.")] = None,
    format: FormatOpt = OutputFormat.table, raw_csv: RawCsvOpt = False,
) -> None:
    """Failure spikes, stuck runs and growing queues the stream detected."""
    from dashboards import stats

    f = _filters(since, None, account, None, None, None, None, None, None)
    _run_stats_query(ctx, lambda: stats.alerts(f, state.value if state else None), format, raw_csv)


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
    since: Annotated[str, typer.Option(help=f"Check buckets from this time: {TIME_FORMS}.")] = "7d",
    format: FormatOpt = OutputFormat.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Compare the aggregates with the raw runs per account and minute; exit 3 on any drift.

    A run finished in the `runs` view must be counted once in `run_stats` in the minute it
    finished. Buckets that disagree are listed with the difference (positive: counted more
    than once, negative: missing); schedule it (cron, a Grafana alert on its output) to watch
    for drift continuously."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    moment = parse_when(since, "--since")
    client = _query_client(settings_of(ctx))
    try:
        result = client.query(RECONCILE_SQL, parameters={"since": moment})
    except DatabaseError as exc:
        raise UserError(_clickhouse_message(exc)) from None
    rows = result.result_rows
    drift = sum(abs(r[-1]) for r in rows)
    if rows:
        write_rows(list(result.column_names), rows, format, raw_csv=raw_csv)
    err.print(f"drift: {drift} runs in {len(rows)} buckets since {moment:%Y-%m-%d %H:%M} UTC", highlight=False)
    if drift:
        raise typer.Exit(3)


@schema_app.command("export")
def schema_export(
    output: Annotated[Optional[str], typer.Option("--out", "-o", help="File to write; stdout if omitted.",
                                                  callback=path_value)] = None,
) -> None:
    """Write the JSON Schema of one event."""
    from schemas import event_json_schema

    text = orjson.dumps(event_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
        out.print(f"wrote {printable(output, one_line=True)}", markup=False, highlight=False)


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
    """The one error line: printable, URLs and the settings' secrets redacted."""
    err.print(f"runlens: error: {printable(redact_text(message, _SECRETS), one_line=True)}",
              highlight=False, soft_wrap=True, markup=False)
    raise SystemExit(code)


def _os_message(exc: OSError) -> str:
    where = f": {shown(str(exc.filename), 120)}" if exc.filename is not None else ""
    return f"{exc.strerror or exc}{where}"


# Libraries that log a failure before raising it: without a handler of their own, Python's
# last-resort handler would print those records to stderr next to the error line. (A handler
# configured on the root logger, as the worker's, still receives them.)
_CHATTY_LIBRARIES = ("clickhouse_connect", "urllib3")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turning expected failures into one-line errors."""
    from embedded.stack import StackNotRunning
    from producers.kafka import BrokerUnavailable, DeliveryFailed
    from sinks.clickhouse import WarehouseError

    for library in _CHATTY_LIBRARIES:   # their errors reach the user as the one error line instead
        logging.getLogger(library).addHandler(logging.NullHandler())
    _SECRETS.clear()                     # one invocation's secrets (main runs more than once in tests)
    try:
        check_argv(sys.argv[1:] if argv is None else argv)
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
    except BadArgument as exc:
        _fail(str(exc), 2)
    except (UserError, StackNotRunning, BrokerUnavailable, DeliveryFailed, WarehouseError) as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except OSError as exc:   # a path the system refuses (too long, no permission...), a refused connection
        _fail(_os_message(exc), 1)


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
