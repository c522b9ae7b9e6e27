"""`runlens export` (runs, steps or failures as CSV) and `runlens sql` (the SQL library)."""

from __future__ import annotations

import io
import os
import re
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol, cast

import typer

from dashboards import runs as rq
from dashboards import sqllib
from runlens.cli.common import (
    MAX_VALUE_CHARS,
    BadArgument,
    RawCsvOpt,
    UserError,
    clickhouse_message,
    parse_when,
    path_value,
    shown,
    text_values,
)
from runlens.cli.explore_common import (
    AccountOpt,
    CardOpt,
    ContactOpt,
    ErrorClassOpt,
    ErrorCodeOpt,
    ExportKind,
    Format,
    FormatOpt,
    ReplaysOpt,
    SinceOpt,
    SiteOpt,
    StatusOpt,
    TriggerOpt,
    TypeOpt,
    UntilOpt,
    VersionOpt,
    WorkflowOpt,
    build_query,
    client_of,
    console_for,
    now_utc,
    plain_value,
    rfc3339,
    run_filters,
    run_rows,
    say,
    write_table,
)

# --------------------------------------------------------------------------- export

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from rich.progress import Progress


class _Records:
    """Counts CSV records in a byte stream: newlines outside quoted fields."""

    def __init__(self) -> None:
        self.rows = 0
        self._quoted = False

    def feed(self, chunk: bytes) -> int:
        if not self._quoted and b'"' not in chunk:
            found = chunk.count(b"\n")
        else:
            found = 0
            pieces = chunk.split(b"\n")
            for piece in pieces[:-1]:
                if piece.count(b'"') & 1:
                    self._quoted = not self._quoted
                if not self._quoted:
                    found += 1
            if pieces[-1].count(b'"') & 1:
                self._quoted = not self._quoted
        self.rows += found
        return found


class CsvGuard:
    """``csv_safe`` for ClickHouse's CSV as it streams: a text cell starting with = + - @ tab
    or CR gets a leading ``'``. ClickHouse quotes text (and dates, arrays), never numbers, so only
    quoted cells are touched and -5 stays -5. A quote opens a cell when it follows a comma or a
    record end and the quotes before it pair up (inside a cell every quote is doubled)."""

    _OPENING = re.compile(rb'(?<=[,\n])"[=+\-@\t\r]')

    def __init__(self) -> None:
        self._odd = False      # an odd number of quotes so far: inside a quoted cell
        self._last = b"\n"     # the byte before the pending data (the stream starts a record)
        self._held = b""       # the last bytes of a chunk, kept until the next shows what follows

    def feed(self, chunk: bytes, final: bool = False) -> bytes:
        """The guarded bytes of ``chunk`` that can be written now (the rest with the next call)."""
        data = self._held + chunk
        ready = len(data) if final else max(0, len(data) - 2)
        view, pieces, pos, odd = self._last + data, [], 0, self._odd
        for match in self._OPENING.finditer(view, 1):
            quote = match.start() - 1            # its index in data
            if quote >= ready:
                break
            odd ^= bool(data.count(b'"', pos, quote) & 1)
            pieces.append(data[pos:quote])
            pos = quote
            if not odd:                          # a cell opens here: guard it
                pieces.append(b"\"'")
                pos, odd = quote + 1, True
        odd ^= bool(data.count(b'"', pos, ready) & 1)
        pieces.append(data[pos:ready])
        self._odd, self._held = odd, data[ready:]
        if ready:
            self._last = data[ready - 1:ready]
        return b"".join(pieces)


class ByteSink(Protocol):
    """Where an export goes: a binary file or standard output's buffer."""

    def write(self, data: bytes, /) -> object: ...


def csv_header(columns: Iterable[str]) -> bytes:
    return (",".join(columns) + "\r\n").encode()


def stream_csv(client: Client, query: rq.Query, sink: ByteSink, on_rows: Callable[[int], object] | None = None,
               chunk_size: int = 1 << 16, raw: bool = False) -> int:
    """Write the header and every row of ``query`` as RFC 4180 CSV to the binary ``sink``, chunk by
    chunk as ClickHouse streams it (memory stays flat whatever the size); text cells guarded
    against spreadsheet formulas (``CsvGuard``) unless ``raw``. Returns the rows written."""
    sink.write(csv_header(query.columns))
    counter = _Records()
    guard = None if raw else CsvGuard()
    # a sync client's stream is a file object (StreamContext is what the async client returns)
    stream = cast(io.IOBase, client.raw_stream(query.sql, parameters=query.params, fmt="CSV"))
    try:
        while True:
            chunk = stream.read(chunk_size)
            if not chunk:
                break
            sink.write(chunk if guard is None else guard.feed(chunk))
            found = counter.feed(chunk)
            if on_rows is not None and found:
                on_rows(found)
        if guard is not None:
            sink.write(guard.feed(b"", final=True))
    finally:
        stream.close()
    return counter.rows


MAX_EXPORT_ROWS = 10**12


def export_command(
    ctx: typer.Context,
    kind: Annotated[ExportKind, typer.Argument(help="runs, steps (every attempt) or failures (failed attempts).")],
    account: AccountOpt,
    since: SinceOpt = None, until: UntilOpt = None, status: StatusOpt = [], type_: TypeOpt = [],  # noqa: B006
    workflow: WorkflowOpt = [], version: VersionOpt = [], site: SiteOpt = [], card: CardOpt = [],  # noqa: B006
    trigger: TriggerOpt = [], contact: ContactOpt = [], error_code: ErrorCodeOpt = [],  # noqa: B006
    error_class: ErrorClassOpt = [], replays: ReplaysOpt = None,  # noqa: B006
    sort: Annotated[str, typer.Option(help="Run sort key (runs only), as in `runs list`.",
                                      callback=text_values)] = "started_at:asc",
    limit: Annotated[int | None, typer.Option(help=f"At most this many rows (1..{MAX_EXPORT_ROWS:,}).")] = None,
    out_file: Annotated[str | None, typer.Option("--out", "-o", help="CSV file to write; - or omitted: stdout.",
                                                    callback=path_value)] = None,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Stream runs, steps or failures of the filtered runs to CSV (RFC 4180, UTC RFC 3339 times).

    Text cells starting with = + - @ tab or CR get a leading ' so a spreadsheet opening the file
    does not run them as formulas (OWASP CSV injection); numbers such as -5 are left alone.
    --raw-csv writes every cell exactly as stored."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    f = run_filters(account, since, until, status, type_, workflow, version, site, card, trigger, contact,
                 error_code, error_class, replays)
    if limit is not None and limit > MAX_EXPORT_ROWS:
        raise BadArgument(f"--limit: {limit} (use 1..{MAX_EXPORT_ROWS:,})")
    query = build_query(lambda: rq.export(kind.value, f, sort, limit))
    target = None
    if out_file not in (None, "-"):
        target = Path(out_file)
        if target.is_dir():
            raise UserError(f"--out: {shown(out_file)} is a directory")
        if not target.parent.is_dir():
            raise UserError(f"--out: no such directory {shown(str(target.parent))}")
    client = client_of(ctx)
    progress = None
    if target is not None and sys.stderr.isatty():  # a bar next to CSV on the same terminal would garble it
        total = run_rows(client, build_query(lambda: rq.export_count(kind.value, f, limit)))[1][0][0]
        progress = _progress(kind.value, total)
    try:
        if target is None:
            rows = _export_to(client, query, sys.stdout.buffer, progress, raw_csv)
            sys.stdout.flush()
        else:
            partial = target.with_name(target.name + ".part")
            try:
                with partial.open("wb") as sink:
                    rows = _export_to(client, query, sink, progress, raw_csv)
                os.replace(partial, target)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
    except DatabaseError as exc:
        raise UserError(clickhouse_message(exc)) from None
    if target is not None:
        say(f"exported {rows:,} rows of {kind.value} to {target}")


def _progress(kind: str, total: int) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(f"exporting {kind}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=console_for(stderr=True), transient=True)
    progress.add_task(kind, total=total)
    return progress


def _export_to(client: Client, query: rq.Query, sink: ByteSink, progress: Progress | None, raw: bool = False) -> int:
    if progress is None:
        return stream_csv(client, query, sink, raw=raw)
    task = progress.task_ids[0]
    with progress:
        return stream_csv(client, query, sink, on_rows=lambda n: progress.advance(task, n), raw=raw)


# --------------------------------------------------------------------------- sql library


def sql_command(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Library query to run; omit to list the library.",
                                                  callback=text_values)] = None,
    account: Annotated[str | None, typer.Option(
        "--account", "-a", envvar="RUNLENS_ACCOUNT", show_envvar=True, callback=text_values,
        help="The account (tenant) to read (required to run a query).")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="NAME=VALUE for a query parameter. Repeatable. "
                                             "Numbers and times in ASCII; times as --since of `runs list`.")] = [],  # noqa: B006
    print_sql: Annotated[bool, typer.Option(
        "--print", help="Print the query and its bound parameters; run nothing.")] = False,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Run a query of the SQL library (dashboards/sql) for one account, or list the library."""
    from typer._click import exceptions as click_errors

    if name is None:
        library_rows = []
        for query in build_query(sqllib.library).values():
            params = ", ".join(p.name + (f"={p.default}" if p.default is not None else "")
                               for p in query.params if p.name != "account")
            library_rows.append([query.name, query.summary, params])
        write_table(["name", "summary", "parameters"], library_rows, format, raw_csv)
        return
    query = build_query(lambda: sqllib.load(name))
    if not account or not account.strip():
        raise click_errors.UsageError("Missing option '--account' / '-a' (or RUNLENS_ACCOUNT).", ctx=ctx)
    now = now_utc()
    given = _param_values(query, build_query(lambda: sqllib.parse_assignments(param)), now)
    bound = build_query(lambda: sqllib.bind(query, account, given, now))
    if print_sql:
        sys.stdout.write(query.header + "\n" + query.sql + "\n")
        for key, value in bound.params.items():
            sys.stdout.write(f"-- {key} = {plain_value(value, Format.json)!r}\n")
        return
    columns, rows = run_rows(client_of(ctx), bound)
    write_table(columns, rows, format, raw_csv)


def _param_values(query: sqllib.LibraryQuery, given: dict[str, str], now: datetime) -> dict[str, str]:
    """``--param`` values checked against their declared types before binding: text 0..512
    characters; numbers in ASCII digits; times read as ``--since`` is (and passed on as RFC 3339)."""
    types = {p.name: p.type for p in query.params}
    checked = {}
    for name, text in given.items():
        what, ptype = f"--param {name}", types.get(name, "String")
        if len(text) > MAX_VALUE_CHARS:
            raise BadArgument(f"{what}: at most {MAX_VALUE_CHARS} characters, not {len(text):,}")
        if ptype.startswith(("DateTime64", "DateTime")):
            text = rfc3339(parse_when(text, what, now))
        elif ptype != "String" and not text.isascii():
            raise BadArgument(f"{what}: {shown(text)} is not a number in ASCII digits ({ptype})")
        checked[name] = text
    return checked
