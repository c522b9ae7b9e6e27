"""What every ``runlens`` command module shares, and nothing that is a command.

Consoles (``out``/``err``), safe output (``printable``, ``csv_safe``, ``write_rows``), argument
checks and the command line's readings of times (``parse_when``) and durations
(``parse_duration_option``), both by the one parser of each in ``schemas.times``,
settings (``settings_of``), the read-only query client (``query_client``) and the one
"run a query, translate its error" path (``run_query``/``run_and_report``), signal handling
(``stop_on_signals``) and the error translation of ``main`` (``run_app``: one line on stderr, exit
2 for an ``InputError``, 1 for any other ``RunlensError`` and the third-party errors mapped here).

This module imports no command module (nor ``runlens.cli`` itself): command modules import it.
"""

from __future__ import annotations

import csv
import inspect
import logging
import re
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TextIO, TypeVar

import orjson
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click import exceptions as click_errors  # typer vendors click since 0.22

from runlens.settings import Settings, redact_text
from schemas.errors import InputError, RunlensError, UnavailableError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from clickhouse_connect.driver.query import QueryResult
    from rich.progress import Progress

    from dashboards.stats import Filters, Query
    from producers.workload import WorkloadConfig

out = Console()
err = Console(stderr=True)


class UserError(UnavailableError):
    """A problem the user can fix (a missing file, nothing running, an unreachable service, a
    failed query): printed as one line, exit code 1."""


class BadArgument(InputError):
    """A malformed or out-of-range argument, found before anything runs: exit code 2, like the
    usage errors typer reports itself."""


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
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_MAX = datetime(2300, 1, 1, tzinfo=UTC)   # exclusive
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


def _param_name(param: typer.CallbackParam) -> str:
    if getattr(param, "param_type_name", "") == "option":
        return param.opts[0]
    return getattr(param, "metavar", None) or (param.name or "").upper()


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
    from schemas.times import parse_time

    now = now or datetime.now(UTC)
    check_text(text, option, 64)
    if not text.isascii():
        raise BadArgument(f"{option}: invalid time {shown(text)} (use ASCII digits: a duration like 24h or 7d, "
                          "a date or RFC 3339)")
    try:
        moment = parse_time(text, now)
    except ValueError as exc:   # an invalid time, or a duration over 36,500 days
        raise BadArgument(f"{option}: {exc}") from None
    except OverflowError:
        raise BadArgument(f"{option}: {shown(text)} is out of range") from None
    if not TIME_MIN <= moment < TIME_MAX:
        raise BadArgument(f"{option}: {shown(text)} is outside 1900-01-01 .. 2299-12-31")
    return moment


def parse_duration_option(text: str, option: str) -> timedelta:
    """A duration option (90s, 10m, 2h, 30d; at most 36,500 days); BadArgument otherwise."""
    from schemas.times import parse_duration

    try:
        return parse_duration(check_text(text, option, 64))
    except ValueError as exc:
        raise BadArgument(f"{option}: {printable(str(exc), one_line=True)}") from None


def since_or_none(text: str | None, option: str = "time") -> datetime | None:
    """None, or the time ``parse_when`` reads from ``text``."""
    return None if text is None else parse_when(text, option)


# --------------------------------------------------------------------------- settings


_SECRETS: set[str] = set()   # the settings' passwords (and tokens), scrubbed from every error line


def add_secret(secret: str) -> None:
    """Scrub ``secret`` from every error line of this invocation."""
    _SECRETS.add(secret)


def load_settings(ctx: typer.Context) -> None:
    """The root callback's work: read the settings (RUNLENS_* variables) once into ``ctx.obj``."""
    ctx.ensure_object(dict)
    if "settings" not in ctx.obj:
        try:
            ctx.obj["settings"] = Settings()
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise UserError(f"bad setting RUNLENS_{str(first['loc'][0]).upper()}: {first['msg']}") from None
    _SECRETS.update(ctx.obj["settings"].secrets())


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.ensure_object(dict)["settings"]


# --------------------------------------------------------------------------- queries and output


def query_client(settings: Settings) -> Client:
    """A client that cannot write: the embedded read endpoint with the stack file's credentials,
    or a server with ``readonly=1`` on every query (``embedded.stack.resolve_reader``)."""
    from embedded.stack import resolve_reader

    return resolve_reader(settings).connect(settings.database)


def clickhouse_message(exc: Exception) -> str:
    text = str(exc)
    marker = "DB::Exception: "
    if marker in text:
        text = text.split(marker, 1)[1]
    return "query failed: " + redact_text(text.split("\n")[0].split(". (")[0].strip(), _SECRETS)


def run_query(client: Client, sql: str, parameters: dict[str, Any] | None = None) -> QueryResult:
    """``client.query``, a refused or failed query turned into the one-line UserError."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        return client.query(sql, parameters=parameters)
    except DatabaseError as exc:
        raise UserError(clickhouse_message(exc)) from None


def run_and_report(ctx: typer.Context, sql: str, parameters: dict[str, Any] | None, fmt: OutputFormat,
                   raw_csv: bool = False) -> None:
    """Run read-only ``sql`` with the settings' query client and print its rows as ``fmt``."""
    result = run_query(query_client(settings_of(ctx)), sql, parameters)
    write_rows(list(result.column_names), result.result_rows, fmt, raw_csv=raw_csv)


def plain_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return value


def write_rows(columns: list[str], rows: Iterable[Sequence[Any]], fmt: OutputFormat, stream: TextIO | None = None,
               *, raw_csv: bool = False) -> None:
    """Print rows as a table, CSV (RFC 4180 quoting) or JSON lines. The table is for a terminal:
    every cell made ``printable`` and never read as markup. CSV text cells go through ``csv_safe``
    unless ``raw_csv``; CSV and JSON otherwise carry the values as stored."""
    stream = stream or sys.stdout
    if fmt is OutputFormat.csv:
        cell: Callable[[Any], Any] = plain_cell if raw_csv else (lambda v: csv_safe(plain_cell(v)))
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow([cell(c) for c in columns])
        for row in rows:
            writer.writerow(["" if v is None else cell(v) for v in row])
    elif fmt is OutputFormat.json:
        for row in rows:
            record = dict(zip(columns, map(plain_cell, row), strict=False))
            stream.write(orjson.dumps(record, default=str).decode() + "\n")
    else:
        table = Table(show_lines=False)
        for column in columns:
            table.add_column(Text(printable(str(column))))
        for row in rows:
            table.add_row(*(Text(printable("" if v is None else str(plain_cell(v)))) for v in row))
        out.print(table)


TIME_FORMS = "now, today, yesterday, a duration ago (24h, 7d), a date or RFC 3339; 1900..2299"
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format. " + CSV_GUARD_HELP)]


# --------------------------------------------------------------------------- workload options (simulate, demo)


_Parsed = TypeVar("_Parsed")

_WORKLOAD_KINDS = ("spike", "silence", "backlog")


def _as_option_error(exc: ValueError, option: str | None = None) -> BadArgument:
    """The workload's messages name their kind ("spike: ..."): the one-line error names the option
    (``option`` when the message names none)."""
    kind, found, reason = str(exc).partition(": ")
    if found and kind in _WORKLOAD_KINDS:
        message = f"--{kind}: {reason}"
    else:
        message = f"{option}: {exc}" if option else str(exc)
    return BadArgument(printable(message, one_line=True))


def workload_options(seed: int, accounts: int, rate: float, backfill_rate: float,
                     spikes: list[str], backlogs: list[str], now: datetime,
                     silences: list[str] | None = None) -> WorkloadConfig:
    from producers.workload import Backlog, Silence, Spike, WorkloadConfig, check_workload

    def parse(option: str, kind: Callable[[str, datetime], _Parsed], texts: list[str]) -> tuple[_Parsed, ...]:
        parsed: list[_Parsed] = []
        for text in texts:
            check_text(text, option)
            if not text.isascii():
                raise BadArgument(f"{option}: {shown(text)} is not ASCII (workflow ids and names of the "
                                  "simulated catalog, ASCII digits)")
            try:
                parsed.append(kind(text, now))
            except ValueError as exc:
                raise _as_option_error(exc, option) from None
            except OverflowError:
                raise BadArgument(f"{option}: {shown(text)} is out of range (times 1..9999 AD)") from None
        return tuple(parsed)

    spiked, backlogged = parse("--spike", Spike.parse, spikes), parse("--backlog", Backlog.parse, backlogs)
    silenced = parse("--silence", Silence.parse, silences or [])
    try:
        config = WorkloadConfig(seed=seed, accounts=accounts, live_runs_per_second=rate,
                                backfill_runs_per_hour=backfill_rate, spikes=spiked, backlogs=backlogged,
                                silences=silenced)
        check_workload(config)   # a spike, silence or backlog naming nothing: one line, not a traceback
        return config
    except ValueError as exc:
        raise _as_option_error(exc) from None


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
SilenceOpt = Annotated[list[str], typer.Option(
    "--silence", help="A workflow that stops: workflow=ID|NAME,at=TIME|-90m[,minutes=60] (no minutes: to the "
                      "end). Repeatable.")]
DURATION_HELP = " At most 36,500 days."


# --------------------------------------------------------------------------- stats filter options

SinceOpt = Annotated[str | None, typer.Option(help=f"From this time: {TIME_FORMS}.")]
UntilOpt = Annotated[str | None, typer.Option(help="Until this time (same forms as --since).")]
# The nine filters of the stats commands, defined once, in the order they are listed in --help.
STATS_FILTERS: dict[str, Any] = {
    "since": SinceOpt,
    "until": UntilOpt,
    "account": Annotated[str | None, typer.Option(help="Only this account.", callback=text_values)],
    "workflow": Annotated[str | None, typer.Option(help="Only this workflow id.", callback=text_values)],
    "version": Annotated[int | None, typer.Option(min=0, max=2**32 - 1, help="Only this workflow version.")],
    "type_": Annotated[str | None, typer.Option("--type", help="Workflow type: card, site, contact, survey, "
                                                                    "integration.")],
    "trigger": Annotated[str | None, typer.Option(help="Trigger: manual, automatic, api, scheduled.")],
    "site": Annotated[str | None, typer.Option(help="Only this site id.", callback=text_values)],
    "card": Annotated[str | None, typer.Option(help="Only this card id.", callback=text_values)],
}


def stats_filters(since: str | None = None, until: str | None = None, account: str | None = None,
                  workflow: str | None = None, version: int | None = None, type_: str | None = None,
                  trigger: str | None = None, site: str | None = None, card: str | None = None) -> Filters:
    """``dashboards.stats.Filters`` from the stats options: BadArgument for an unknown type or
    trigger, an unreadable time or an empty range."""
    from dashboards.stats import Filters
    from schemas.events import Trigger, WorkflowType

    if type_ is not None and type_ not in {t.value for t in WorkflowType}:
        raise BadArgument(f"--type: unknown workflow type {shown(type_)} (card, site, contact, survey, integration)")
    if trigger is not None and trigger not in {t.value for t in Trigger}:
        raise BadArgument(f"--trigger: unknown trigger {shown(trigger)} (manual, automatic, api, scheduled)")
    start, end = since_or_none(since, "--since"), since_or_none(until, "--until")
    if start is not None and end is not None and start >= end:
        raise BadArgument("the date range is empty: --since must be before --until")
    return Filters(since=start, until=end, account=account, workflow=workflow,
                   version=version, type=type_, trigger=trigger, site=site, card=card)


StatsBuilder = Callable[..., "Query"]
_Builder = TypeVar("_Builder", bound=StatsBuilder)


def stats_command(app: typer.Typer, name: str, filters: tuple[str, ...],
                  since: str = "7d") -> Callable[[_Builder], _Builder]:
    """Register ``build`` as the stats command ``name``: its own options (``build``'s parameters
    before ``f``), then the ``filters`` (names of ``STATS_FILTERS``; ``--since``
    defaulting to ``since``), its options after ``f``, ``--format`` and ``--raw-csv``, in that
    order (as --help lists them). The command reads the filters into
    ``f``, calls ``build(f=f, **own)`` for the query (its StatsError is a bad argument) and prints
    the rows."""

    def register(build: _Builder) -> _Builder:
        own = [p for p in inspect.signature(build, eval_str=True).parameters.values()]
        split = [p.name for p in own].index("f")
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = [inspect.Parameter("ctx", keyword, annotation=typer.Context),
                  *(p.replace(kind=keyword) for p in own[:split]),
                  *(inspect.Parameter(n, keyword, annotation=STATS_FILTERS[n], default=since if n == "since" else None)
                    for n in filters),
                  *(p.replace(kind=keyword) for p in own[split + 1:]),
                  inspect.Parameter("format", keyword, annotation=FormatOpt, default=OutputFormat.table),
                  inspect.Parameter("raw_csv", keyword, annotation=RawCsvOpt, default=False)]

        def command(ctx: typer.Context, format: OutputFormat, raw_csv: bool, **values: Any) -> None:
            from dashboards.stats import StatsError

            f = stats_filters(**{n: values.pop(n) for n in filters})
            try:
                query = build(f=f, **values)
            except StatsError as exc:
                raise BadArgument(printable(str(exc), one_line=True)) from None
            run_and_report(ctx, query.sql, query.params, format, raw_csv)

        command.__name__ = command.__qualname__ = build.__name__
        command.__doc__ = build.__doc__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]  # read by typer (inspect)
        command.__annotations__ = {p.name: p.annotation for p in params}
        app.command(name)(command)
        return build

    return register


def progress_spinner() -> Progress:
    """A transient spinner with elapsed time on stderr."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=err, transient=True)


# --------------------------------------------------------------------------- signals and errors

class stop_on_signals:
    """Turn SIGTERM and SIGINT into KeyboardInterrupt so `with` blocks unwind and children
    are stopped (SIGINT explicitly: a shell's background job starts with it ignored)."""

    _SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> stop_on_signals:
        self._previous = {sig: signal.signal(sig, self._raise) for sig in self._SIGNALS}
        return self

    @staticmethod
    def _raise(signum: int, frame: FrameType | None) -> NoReturn:
        raise KeyboardInterrupt

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def fail(message: str, code: int) -> NoReturn:
    """The one error line: printable, URLs and the settings' secrets redacted."""
    err.print(f"runlens: error: {printable(redact_text(message, _SECRETS), one_line=True)}",
              highlight=False, soft_wrap=True, markup=False)
    raise SystemExit(code)


def os_message(exc: OSError) -> str:
    where = f": {shown(str(exc.filename), 120)}" if exc.filename is not None else ""
    return f"{exc.strerror or exc}{where}"


# Libraries that log a failure before raising it: without a handler of their own, Python's
# last-resort handler would print those records to stderr next to the error line. (A handler
# configured on the root logger, as the worker's, still receives them.)
_CHATTY_LIBRARIES = ("clickhouse_connect", "urllib3")


def _third_party(exc: BaseException) -> tuple[str, int] | None:
    """The one place third-party errors are mapped: (message, exit code), or None."""
    from clickhouse_connect.driver.exceptions import Error as ClickHouseError
    from confluent_kafka import KafkaException

    if isinstance(exc, ClickHouseError):
        return clickhouse_message(exc), 1
    if isinstance(exc, KafkaException):
        return f"broker: {exc.args[0] if exc.args else exc}", 1
    if isinstance(exc, OSError):   # a path the system refuses (too long, no permission...), a refused connection
        return os_message(exc), 1
    return None


def run_app(app: typer.Typer, argv: list[str] | None = None) -> None:
    """Run ``app``, turning expected failures into one-line errors: an ``InputError`` (a bad
    argument) exits 2, any other ``RunlensError`` 1; usage errors 2, interrupts 130."""
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
        fail("aborted", 130)
    except click_errors.NoArgsIsHelpError:
        raise SystemExit(2) from None
    except click_errors.UsageError as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        fail(exc.format_message().replace("\n", " ").replace("Value error, ", "") + hint, 2)
    except click_errors.ClickException as exc:
        fail(exc.format_message(), exc.exit_code or 1)
    except InputError as exc:
        fail(str(exc), 2)
    except RunlensError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        raise SystemExit(0) from None
    except Exception as exc:
        mapped = _third_party(exc)
        if mapped is None:
            raise
        fail(*mapped)
