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
        app(args=argv, prog_name="runlens", standalone_mode=False)
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


if __name__ == "__main__":
    main()
