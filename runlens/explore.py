"""The run explorer and failure analysis on the command line: ``runlens runs``, ``export``,
``sql`` and ``retention``.

Every command reads exactly one account (``--account`` or ``RUNLENS_ACCOUNT``) and binds every
value the user types as a query parameter (the SQL is built by ``dashboards.runs`` and
``dashboards.sqllib``). Bad input is one line on stderr and a non-zero exit, before any query
runs. ``register(app)`` adds the commands to the main ``runlens`` app.
"""

from __future__ import annotations

import os
import re
import sys
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Optional

import orjson
import typer

from dashboards import runs as rq
from dashboards import sqllib


def register(app: typer.Typer) -> None:
    """Add ``runs``, ``export``, ``sql`` and ``retention`` to the ``runlens`` app."""
    app.add_typer(runs_app, name="runs")
    app.command("export")(export_command)
    app.command("sql")(sql_command)
    app.add_typer(retention_app, name="retention")


def _cli_module() -> ModuleType:
    """runlens.cli, imported on first use (it imports this module while it registers commands)."""
    import runlens.cli

    return runlens.cli


def _error(message: str) -> Exception:
    """Something running found (not found, refused...): exit code 1."""
    return _cli_module().UserError(message)


def _bad(message: str) -> Exception:
    """A malformed or out-of-range argument: exit code 2."""
    return _cli_module().BadArgument(message)


def _text(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    return _cli_module().text_values(ctx, param, value)


def _path(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    return _cli_module().path_value(ctx, param, value)


runs_app = typer.Typer(help="The Workflow Runs page: list, show and compare runs, replay outcomes.",
                       no_args_is_help=True, rich_markup_mode=None)
retention_app = typer.Typer(help="Retention by plan: how long each account's runs and steps are kept.",
                            no_args_is_help=True, rich_markup_mode=None)


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


class ExportKind(StrEnum):
    runs = "runs"
    steps = "steps"
    failures = "failures"


AccountOpt = Annotated[str, typer.Option(
    "--account", "-a", envvar="RUNLENS_ACCOUNT", show_envvar=True, callback=_text,
    help="The account (tenant) to read. Every command reads exactly one.")]
# The same text and option as runlens.cli's (this module cannot import it at load time).
CSV_GUARD_HELP = ("CSV cells of text starting with = + - @ tab or CR get a leading ' so spreadsheets do not run "
                  "them as formulas (numbers are left alone); --raw-csv turns this off.")
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format. " + CSV_GUARD_HELP)]
RawCsvOpt = Annotated[bool, typer.Option(
    "--raw-csv", help="CSV: write text cells exactly as stored, without the ' guard against spreadsheet "
                      "formulas (= + - @ tab CR).")]
SinceOpt = Annotated[Optional[str], typer.Option(
    help="Runs started from: now, today, yesterday, 24h / 7d / 30d (ago), a date or an RFC 3339 time "
         "(1900..2299).")]
UntilOpt = Annotated[Optional[str], typer.Option(help="Runs started before (same forms as --since).")]
StatusOpt = Annotated[list[str], typer.Option(
    "--status", "-s", callback=_text, help="success, failed, running, pending, stopped. Repeat or comma-separate.")]
TypeOpt = Annotated[list[str], typer.Option(
    "--type", callback=_text, help="Workflow type: card, site, contact, survey, integration. Repeatable.")]
WorkflowOpt = Annotated[list[str], typer.Option("--workflow", "-w", callback=_text,
                                                help="Workflow id or name. Repeatable.")]
VersionOpt = Annotated[list[str], typer.Option("--version", callback=_text,
                                               help="Workflow version number (0..4294967295). Repeatable.")]
SiteOpt = Annotated[list[str], typer.Option("--site", callback=_text, help="Site id or name. Repeatable.")]
CardOpt = Annotated[list[str], typer.Option("--card", callback=_text, help="Card id or name. Repeatable.")]
TriggerOpt = Annotated[list[str], typer.Option(
    "--trigger", callback=_text, help="manual, automatic, api, scheduled. Repeatable.")]
ContactOpt = Annotated[list[str], typer.Option("--contact", callback=_text, help="Contact id. Repeatable.")]
ErrorCodeOpt = Annotated[list[str], typer.Option("--error-code", callback=_text, help="Run error code. Repeatable.")]
ErrorClassOpt = Annotated[list[str], typer.Option(
    "--error-class", callback=_text, help="config, data, external_service, logic, internal. Repeatable.")]
ReplaysOpt = Annotated[Optional[str], typer.Option(
    "--replays", callback=_text, help="only: replays only; exclude: original runs only.")]
SortOpt = Annotated[str, typer.Option(
    callback=_text,
    help="Sort key, '-' for descending or KEY:asc|desc: started_at, queued_at, finished_at, duration, "
         "queue, workflow, version, status, trigger, site, card, run_id.")]
RunIdArg = Annotated[str, typer.Argument(help="The run id.", callback=_text)]


# --------------------------------------------------------------------------- plumbing


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _values(items: list[str]) -> tuple[str, ...]:
    """Repeated and comma-separated option values, in order, without blanks or repeats."""
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


_VERSION = re.compile(r"[vV]?([0-9]{1,10})", re.ASCII)
MAX_VERSION = 2**32 - 1   # the contract's workflow_version is a UInt32


def _versions(items: list[str]) -> tuple[int, ...]:
    out = []
    for text in _values(items):
        match = _VERSION.fullmatch(text)
        if not match or int(match.group(1)) > MAX_VERSION:
            raise _bad(f"--version: {_cli_module().shown(text)} is not a version number (0..{MAX_VERSION})")
        out.append(int(match.group(1)))
    return tuple(out)


def _build(make):
    """Build a query from the user's input; its QueryError is a bad argument (exit code 2)."""
    try:
        return make()
    except (rq.QueryError, sqllib.QueryError) as exc:
        raise _bad(_cli_module().printable(str(exc), one_line=True)) from None


def _filters(account: str, since, until, status, type_, workflow, version, site, card, trigger, contact,
             error_code=(), error_class=(), replays=None) -> rq.RunFilters:
    now = _now()
    parse_when = _cli_module().parse_when
    since_at = parse_when(since, "--since", now) if since is not None else None
    until_at = parse_when(until, "--until", now) if until is not None else None
    return _build(lambda: rq.RunFilters(
        account=account,
        since=since_at,
        until=until_at,
        statuses=_values(status), types=_values(type_), workflows=_values(workflow),
        versions=_versions(version), sites=_values(site), cards=_values(card), triggers=_values(trigger),
        contacts=_values(contact), error_codes=_values(error_code), error_classes=_values(error_class),
        replays=replays))


def _client(ctx: typer.Context):
    cli = _cli_module()
    return cli._query_client(cli.settings_of(ctx))


def _run(client, query: rq.Query) -> tuple[list[str], list[tuple]]:
    from clickhouse_connect.driver.exceptions import DatabaseError

    try:
        result = client.query(query.sql, parameters=query.params)
    except DatabaseError as exc:
        raise _error(_cli_module()._clickhouse_message(exc)) from None
    return list(result.column_names), list(result.result_rows)


def rfc3339(value: datetime) -> str:
    """A UTC time as RFC 3339 with milliseconds and Z (naive times from the warehouse are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _plain(value: Any, fmt: Format) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, (list, tuple)):
        if fmt is Format.json:
            return [_plain(v, fmt) for v in value]
        if fmt is Format.csv:
            return orjson.dumps([_plain(v, Format.json) for v in value]).decode()
        return ", ".join(str(_plain(v, fmt)) for v in value)
    return value


def _write(columns: list[str], rows, fmt: Format, raw_csv: bool = False) -> None:
    """Rows through ``cli.write_rows``: a printable, markup-free table; guarded CSV unless ``raw_csv``."""
    cli = _cli_module()
    cooked = [[_plain(v, fmt) for v in row] for row in rows]
    cli.write_rows(list(columns), cooked, cli.OutputFormat(fmt.value), raw_csv=raw_csv)


def _records(columns: list[str], rows) -> list[dict]:
    return [dict(zip(columns, row)) for row in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _json_doc(document: Any) -> None:
    """One JSON document (times as RFC 3339 UTC, like every other output)."""
    sys.stdout.write(orjson.dumps(_jsonable(document), default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def _console(stderr: bool = False):
    cli = _cli_module()
    return cli.err if stderr else cli.out


def _say(line: str) -> None:
    """One line that may hold event data: printable, no markup."""
    _console().print(_cli_module().printable(line, one_line=True), highlight=False, markup=False, soft_wrap=True)


# --------------------------------------------------------------------------- runs list

MAX_PAGE = 1_000_000_000   # (page - 1) x limit stays a UInt64 offset


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    account: AccountOpt,
    since: SinceOpt = None, until: UntilOpt = None, status: StatusOpt = [], type_: TypeOpt = [],  # noqa: B006
    workflow: WorkflowOpt = [], version: VersionOpt = [], site: SiteOpt = [], card: CardOpt = [],  # noqa: B006
    trigger: TriggerOpt = [], contact: ContactOpt = [], error_code: ErrorCodeOpt = [],  # noqa: B006
    error_class: ErrorClassOpt = [], replays: ReplaysOpt = None,  # noqa: B006
    sort: SortOpt = "-started_at",
    limit: Annotated[int, typer.Option(help=f"Runs per page (1..{rq.MAX_PAGE_SIZE}).")] = 50,
    page: Annotated[int, typer.Option(help=f"Page number, 1..{MAX_PAGE:,}.")] = 1,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Runs of one account with the product's filters, sorted and paged (newest first)."""
    f = _filters(account, since, until, status, type_, workflow, version, site, card, trigger, contact,
                 error_code, error_class, replays)
    if page > MAX_PAGE:
        raise _bad(f"--page: {page} (pages 1..{MAX_PAGE:,})")
    query = _build(lambda: rq.run_list(f, sort, limit, page))
    count = rq.run_count(f)
    client = _client(ctx)
    columns, rows = _run(client, query)
    if format is not Format.table:
        _write(columns, rows, format, raw_csv)
        return
    total = _run(client, count)[1][0][0]
    keep = [columns.index(c) for c in rq.RUN_TABLE_COLUMNS]
    _write(list(rq.RUN_TABLE_COLUMNS), [[row[i] for i in keep] for row in rows], format)
    pages = max(1, -(-total // limit))
    key, direction = rq.parse_sort(sort)
    _console().print(f"page {page} of {pages}, {total} runs, sorted by {key} {direction.lower()}",
                     highlight=False)


# --------------------------------------------------------------------------- runs show


def _one_run(client, account: str, run_id: str) -> dict:
    columns, rows = _run(client, _build(lambda: rq.run_detail(account, run_id)))
    if not rows:
        shown = _cli_module().shown
        raise _error(f"run {shown(run_id)} not found in account {shown(account)}")
    return _records(columns, rows)[0]


def _steps(client, account: str, run_id: str) -> list[dict]:
    columns, rows = _run(client, rq.run_steps(account, run_id))
    return _records(columns, rows)


def _ms(value) -> str:
    if value is None:
        return ""
    if abs(value) < 1000:
        return f"{value} ms"
    if abs(value) < 120_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60000:.1f} min"


def _time(value) -> str:
    return rfc3339(value) if isinstance(value, datetime) else ("" if value is None else str(value))


def _notes(step: dict) -> str:
    parts = []
    if step["status"] == "failed" and step["error_code"]:
        parts.append(f"{step['error_code']}: {step['error_message'] or ''}")
    if step["step_type"] == "condition" and step["condition_result"] is not None:
        parts.append(f"result {str(step['condition_result']).lower()} -> branch {step['branch']}")
    if step["step_type"] == "delay" and step["scheduled_resume_at"] is not None:
        late = step.get("resume_late_ms")
        resumed = _time(step["resumed_at"]) if step["resumed_at"] else "not resumed"
        parts.append(f"scheduled {_time(step['scheduled_resume_at'])}, resumed {resumed}"
                     + (f" ({_ms(late)} late)" if late and late > 0 else ""))
    if step["action_kind"] or step["target"]:
        parts.append(f"{step['action_kind'] or 'action'} -> {step['target'] or ''}")
    return "; ".join(parts)


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run_id: RunIdArg,
    account: AccountOpt,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """One run: overview, step timeline with inputs, outputs and errors, and its replay links."""
    client = _client(ctx)
    run = _one_run(client, account, run_id)
    steps = _steps(client, account, run_id)
    replay_cols, replay_rows = _run(client, rq.run_replays(account, run_id))
    replays = _records(replay_cols, replay_rows)
    original = None
    if run["replay_of"]:
        cols, rows = _run(client, rq.run_links(account, [run["replay_of"]]))
        original = _records(cols, rows)[0] if rows else {"run_id": run["replay_of"], "status": "not found"}
    if format is Format.json:
        _json_doc({"run": run, "original": original, "replays": replays, "steps": steps})
        return
    if format is Format.csv:
        columns = list(steps[0]) if steps else [*rq.STEP_COLUMNS, "resume_late_ms"]
        _write(columns, [list(s.values()) for s in steps], format, raw_csv)
        return
    _print_run(run, steps, original, replays)


def _print_run(run: dict, steps: list[dict], original: dict | None, replays: list[dict]) -> None:
    """The run for a terminal: every value from the events made printable and shown as plain text
    (rich ``Text``, never markup)."""
    from rich.table import Table
    from rich.text import Text

    printable = _cli_module().printable

    def text(value: Any, style: str = "") -> Text:
        return Text(printable(str(value)), style=style)

    console = _console()
    overview = Table(show_header=False, box=None, pad_edge=False, title=text(f"Run {run['run_id']}"),
                     title_justify="left", title_style="bold")
    overview.add_column(style="bold")
    overview.add_column()
    version = f"v{run['workflow_version']}" + (f" ({run['workflow_version_name']})"
                                                if run["workflow_version_name"] else "")
    site = run["site_name"] or run["site_id"]
    card = run["card_name"] or run["card_id"]
    lines = [
        ("workflow", f"{run['workflow_name']} ({run['workflow_id']}, {run['workflow_type']})"),
        ("version", version),
        ("status", run["status"] + (f"  {run['error_code']} [{run['error_class']}]: {run['error_message']}"
                                    if run["error_code"] else "")),
        ("trigger", run["trigger"]),
        ("contact", run["contact_id"] or ""),
        ("site", f"{site} ({run['site_id']})" if site else ""),
        ("card", f"{card} ({run['card_id']})" if card else ""),
        ("queued", _time(run["queued_at"])),
        ("started", _time(run["started_at"])),
        ("finished", _time(run["finished_at"])),
        ("duration", _ms(run["duration_ms"])),
        ("queue wait", _ms(run["queue_ms"])),
    ]
    if original is not None:
        lines.append(("replay of", f"{original['run_id']} ({original.get('status')}"
                                   + (f", {original['error_code']}" if original.get("error_code") else "")
                                   + f"), {run['replay_mode']} replay"))
    for replay in replays:
        lines.append(("replayed by", f"{replay['run_id']} ({replay['replay_mode']} replay, {replay['status']}"
                                     + (f", {replay['error_code']}" if replay["error_code"] else "") + ")"))
    for key, value in lines:
        if value:
            overview.add_row(key, text(value))
    console.print(overview)
    console.print()
    timeline = Table("#", "step", "type", "try", "status", "started", "duration", "input", "output", "notes",
                     title="Steps", title_justify="left", title_style="bold")
    for step in steps:
        cells = (str(step["step_index"]), step["step_name"], step["step_type"], str(step["attempt"]),
                 step["status"], _time(step["started_at"]), _ms(step["duration_ms"]),
                 step["input"] or "", step["output"] or "", _notes(step))
        timeline.add_row(*(text(cell) for cell in cells))
    console.print(timeline)
    for step in steps:
        if step["status"] != "failed":
            continue
        console.print()
        console.print(text(f"Error at step {step['step_index']} '{step['step_name']}', attempt {step['attempt']}",
                           "bold"), highlight=False)
        for label, key in (("code", "error_code"), ("class", "error_class"), ("message", "error_message"),
                           ("suggested fix", "error_suggested_fix"), ("input", "input")):
            if step[key]:
                console.print(text(f"  {label}: {step[key]}"), highlight=False)
        if step["error_stack_trace"]:
            console.print("  stack trace:", highlight=False)
            console.print(text("    " + step["error_stack_trace"].replace("\n", "\n    ")), highlight=False)


# --------------------------------------------------------------------------- runs compare


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    original_id: Annotated[str, typer.Argument(metavar="ORIGINAL", help="The original run.", callback=_text)],
    replay_id: Annotated[str, typer.Argument(metavar="REPLAY", help="Its replay.", callback=_text)],
    account: AccountOpt,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """A run and its replay side by side, step by step, and whether the replay fixed the failure."""
    client = _client(ctx)
    original = _one_run(client, account, original_id)
    replay = _one_run(client, account, replay_id)
    if original["replay_of"] == replay_id and replay["replay_of"] != original_id:
        shown = _cli_module().shown
        raise _error(f"{shown(replay_id)} is the original of {shown(original_id)}: give the original first")
    rows = rq.compare_steps(_steps(client, account, original_id), _steps(client, account, replay_id))
    outcome = rq.verdict(original, replay)
    linked = replay["replay_of"] == original_id
    summary = {
        "original": {k: original[k] for k in ("run_id", "status", "error_code", "error_message", "duration_ms",
                                                "workflow_version")},
        "replay": {k: replay[k] for k in ("run_id", "status", "error_code", "error_message", "duration_ms",
                                            "workflow_version", "replay_mode")},
        "linked": linked,
        "verdict": outcome,
        "fixed": outcome == "fixed",
    }
    if format is Format.json:
        _json_doc({**summary, "steps": rows})
        return
    if format is Format.csv:
        columns = [*rq.COMPARE_COLUMNS, "verdict"]
        _write(columns, [[*(r[c] for c in rq.COMPARE_COLUMNS), outcome] for r in rows], format, raw_csv)
        return
    _say(f"original {original_id}: {original['status']}"
         + (f" ({original['error_code']})" if original["error_code"] else "")
         + f", v{original['workflow_version']}, {_ms(original['duration_ms'])}")
    _say(f"replay   {replay_id}: {replay['status']}"
         + (f" ({replay['error_code']})" if replay["error_code"] else "")
         + f", v{replay['workflow_version']}, {_ms(replay['duration_ms'])}"
         + (f", {replay['replay_mode']} replay" if replay["replay_mode"] else ""))
    if not linked:
        _say(f"note: {replay_id} is not recorded as a replay of {original_id}")
    columns = ["#", "step", "original", "tries", "duration", "error", "replay", "tries ", "duration ", "error ",
               "change"]
    table_rows = [[r["step_index"], r["step_name"], r["original_status"], r["original_attempts"],
                   _ms(r["original_duration_ms"]), r["original_error_code"] or "", r["replay_status"],
                   r["replay_attempts"], _ms(r["replay_duration_ms"]), r["replay_error_code"] or "", r["change"]]
                  for r in rows]
    _write(columns, table_rows, format)
    _say(f"verdict: {outcome}")


# --------------------------------------------------------------------------- runs replays


@runs_app.command("replays")
def runs_replays(
    ctx: typer.Context,
    account: AccountOpt,
    workflow: Annotated[Optional[str], typer.Option("--workflow", "-w", help="Workflow id or name.",
                                                    callback=_text)] = None,
    since: SinceOpt = None, until: UntilOpt = None,
    pairs: Annotated[bool, typer.Option("--pairs", help="One row per replay and its original.")] = False,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """How often replays succeed, exact vs modified, per workflow (or every pair with --pairs)."""
    now = _now()
    given = {"workflow": workflow or ""}
    for name, text in (("since", since), ("until", until)):
        if text is not None:
            given[name] = rfc3339(_cli_module().parse_when(text, f"--{name}", now))
    query = _build(lambda: sqllib.bind(sqllib.load("replay_pairs" if pairs else "replay_outcomes"),
                                       account, given, now))
    columns, rows = _run(_client(ctx), query)
    _write(columns, rows, format, raw_csv)


# --------------------------------------------------------------------------- export


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
    """``cli.csv_safe`` for ClickHouse's CSV as it streams: a text cell starting with = + - @ tab
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
            odd ^= data.count(b'"', pos, quote) & 1
            pieces.append(data[pos:quote])
            pos = quote
            if not odd:                          # a cell opens here: guard it
                pieces.append(b"\"'")
                pos, odd = quote + 1, True
        odd ^= data.count(b'"', pos, ready) & 1
        pieces.append(data[pos:ready])
        self._odd, self._held = odd, data[ready:]
        if ready:
            self._last = data[ready - 1:ready]
        return b"".join(pieces)


def csv_header(columns) -> bytes:
    return (",".join(columns) + "\r\n").encode()


def stream_csv(client, query: rq.Query, sink, on_rows=None, chunk_size: int = 1 << 16, raw: bool = False) -> int:
    """Write the header and every row of ``query`` as RFC 4180 CSV to the binary ``sink``, chunk by
    chunk as ClickHouse streams it (memory stays flat whatever the size); text cells guarded
    against spreadsheet formulas (``CsvGuard``) unless ``raw``. Returns the rows written."""
    sink.write(csv_header(query.columns))
    counter = _Records()
    guard = None if raw else CsvGuard()
    stream = client.raw_stream(query.sql, parameters=query.params, fmt="CSV")
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
                                      callback=_text)] = "started_at:asc",
    limit: Annotated[Optional[int], typer.Option(help=f"At most this many rows (1..{MAX_EXPORT_ROWS:,}).")] = None,
    out_file: Annotated[Optional[str], typer.Option("--out", "-o", help="CSV file to write; - or omitted: stdout.",
                                                    callback=_path)] = None,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Stream runs, steps or failures of the filtered runs to CSV (RFC 4180, UTC RFC 3339 times).

    Text cells starting with = + - @ tab or CR get a leading ' so a spreadsheet opening the file
    does not run them as formulas (OWASP CSV injection); numbers such as -5 are left alone.
    --raw-csv writes every cell exactly as stored."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    f = _filters(account, since, until, status, type_, workflow, version, site, card, trigger, contact,
                 error_code, error_class, replays)
    if limit is not None and limit > MAX_EXPORT_ROWS:
        raise _bad(f"--limit: {limit} (use 1..{MAX_EXPORT_ROWS:,})")
    query = _build(lambda: rq.export(kind.value, f, sort, limit))
    target = None
    if out_file not in (None, "-"):
        target = Path(out_file)
        if target.is_dir():
            raise _error(f"--out: {_cli_module().shown(out_file)} is a directory")
        if not target.parent.is_dir():
            raise _error(f"--out: no such directory {_cli_module().shown(str(target.parent))}")
    client = _client(ctx)
    progress = None
    if target is not None and sys.stderr.isatty():  # a bar next to CSV on the same terminal would garble it
        total = _run(client, _build(lambda: rq.export_count(kind.value, f, limit)))[1][0][0]
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
        raise _error(_cli_module()._clickhouse_message(exc)) from None
    if target is not None:
        _say(f"exported {rows:,} rows of {kind.value} to {target}")


def _progress(kind: str, total: int):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn(f"exporting {kind}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=_console(stderr=True), transient=True)
    progress.add_task(kind, total=total)
    return progress


def _export_to(client, query, sink, progress, raw: bool = False) -> int:
    if progress is None:
        return stream_csv(client, query, sink, raw=raw)
    task = progress.task_ids[0]
    with progress:
        return stream_csv(client, query, sink, on_rows=lambda n: progress.advance(task, n), raw=raw)


# --------------------------------------------------------------------------- sql library


def sql_command(
    ctx: typer.Context,
    name: Annotated[Optional[str], typer.Argument(help="Library query to run; omit to list the library.",
                                                  callback=_text)] = None,
    account: Annotated[Optional[str], typer.Option(
        "--account", "-a", envvar="RUNLENS_ACCOUNT", show_envvar=True, callback=_text,
        help="The account (tenant) to read (required to run a query).")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="NAME=VALUE for a query parameter. Repeatable. "
                                             "Numbers and times in ASCII; times as --since of `runs list`.")] = [],  # noqa: B006
    print_sql: Annotated[bool, typer.Option("--print", help="Print the query and its bound parameters; run nothing.")] = False,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Run a query of the SQL library (dashboards/sql) for one account, or list the library."""
    from typer._click import exceptions as click_errors

    if name is None:
        rows = []
        for query in _build(sqllib.library).values():
            params = ", ".join(p.name + (f"={p.default}" if p.default is not None else "")
                               for p in query.params if p.name != "account")
            rows.append([query.name, query.summary, params])
        _write(["name", "summary", "parameters"], rows, format, raw_csv)
        return
    query = _build(lambda: sqllib.load(name))
    if not account or not account.strip():
        raise click_errors.UsageError("Missing option '--account' / '-a' (or RUNLENS_ACCOUNT).", ctx=ctx)
    now = _now()
    given = _param_values(query, _build(lambda: sqllib.parse_assignments(param)), now)
    bound = _build(lambda: sqllib.bind(query, account, given, now))
    if print_sql:
        sys.stdout.write(query.header + "\n" + query.sql + "\n")
        for key, value in bound.params.items():
            sys.stdout.write(f"-- {key} = {_plain(value, Format.json)!r}\n")
        return
    columns, rows = _run(_client(ctx), bound)
    _write(columns, rows, format, raw_csv)


def _param_values(query, given: dict[str, str], now: datetime) -> dict[str, str]:
    """``--param`` values checked against their declared types before binding: text 0..512
    characters; numbers in ASCII digits; times read as ``--since`` is (and passed on as RFC 3339)."""
    cli = _cli_module()
    types = {p.name: p.type for p in query.params}
    checked = {}
    for name, text in given.items():
        what, ptype = f"--param {name}", types.get(name, "String")
        if len(text) > cli.MAX_VALUE_CHARS:
            raise _bad(f"{what}: at most {cli.MAX_VALUE_CHARS} characters, not {len(text):,}")
        if ptype.startswith(("DateTime64", "DateTime")):
            text = rfc3339(cli.parse_when(text, what, now))
        elif ptype != "String" and not text.isascii():
            raise _bad(f"{what}: {cli.shown(text)} is not a number in ASCII digits ({ptype})")
        checked[name] = text
    return checked


# --------------------------------------------------------------------------- retention


def _writer(ctx: typer.Context):
    """A writable warehouse client with the migrations applied (the worker's DSN)."""
    from sinks.clickhouse import WarehouseError, connect, migrate

    from embedded.stack import StackInfo

    settings = _cli_module().settings_of(ctx)
    if settings.uses_embedded_warehouse and StackInfo.read(settings.stack_file) is not None:
        raise _error(f"the running stack in {settings.data_dir} owns the embedded warehouse: stop it "
                     "(Ctrl-C `runlens up`) and run this again, or point RUNLENS_WAREHOUSE_DSN at a server")
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    try:
        client = connect(settings.worker_dsn, password=password)
        migrate(client, settings.database)
    except WarehouseError as exc:
        raise _error(f"cannot write to the warehouse: {str(exc).splitlines()[0]}") from None
    return client, settings.database


def _retention_days(days: int) -> int:
    from sinks.retention import MAX_DAYS

    if not 0 <= days <= MAX_DAYS:
        raise _bad(f"retention must be 0 (keep forever) to {MAX_DAYS} days, not {days}")
    return days


def _plan_name(plan: str) -> str:
    from sinks.retention import CUSTOM_PLAN

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", plan, re.ASCII) or plan == CUSTOM_PLAN:
        raise _bad(f"invalid plan name {_cli_module().shown(plan)} (letters, digits, - and _, at most 64; "
                   f"not {CUSTOM_PLAN!r})")
    return plan


def _retention_call(fn):
    from sinks.retention import RetentionError

    try:
        return fn()
    except RetentionError as exc:
        raise _error(str(exc)) from None


@retention_app.command("show")
def retention_show(ctx: typer.Context, format: FormatOpt = Format.table, raw_csv: RawCsvOpt = False) -> None:
    """Plans and the accounts on them, with the days each account keeps (0 = forever)."""
    from sinks.retention import DEFAULT_PLAN

    client = _client(ctx)
    _, plan_rows = _run(client, rq.Query("SELECT plan, retention_days FROM retention_plans FINAL ORDER BY plan"))
    plans = dict(plan_rows)
    _, account_rows = _run(client, rq.Query(
        "SELECT account_id, plan, retention_days FROM account_plans FINAL ORDER BY account_id"))
    rows = [["(plan)", plan, days] for plan, days in plan_rows]
    for account, plan, override in account_rows:
        days = override if override is not None else plans.get(plan, plans.get(DEFAULT_PLAN, 0))
        rows.append([account, plan, days])
    _write(["account", "plan", "retention_days"], rows, format, raw_csv)


@retention_app.command("set")
def retention_set(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="The account.", callback=_text)],
    plan_or_days: Annotated[str, typer.Argument(metavar="PLAN|DAYS", help="A plan name, a number of days "
                                                                           "(0..36500), or 'forever'.")],
) -> None:
    """Put an account on a plan (or a custom number of days) and apply the TTL."""
    from sinks import retention

    plan, days = None, None
    if re.fullmatch(r"[0-9]+", plan_or_days, re.ASCII):
        days = _retention_days(int(plan_or_days))
    elif plan_or_days == "forever":
        days = 0
    else:
        plan = _plan_name(plan_or_days)
    client, db = _writer(ctx)
    _retention_call(lambda: retention.set_account(client, db, account, plan=plan, days=days))
    _retention_call(lambda: retention.apply(client, db))
    _say(f"{account}: {plan or (str(days) + ' days' if days else 'kept forever')}; TTL applied")


@retention_app.command("plan")
def retention_plan(
    ctx: typer.Context,
    plan: Annotated[str, typer.Argument(help="Plan name (free, pro, enterprise, default, or a new one; letters, "
                                             "digits, - and _, at most 64).")],
    days: Annotated[int, typer.Argument(help="Days kept (0 = forever, at most 36500).")],
) -> None:
    """Create or change a plan and apply the TTL."""
    from sinks import retention

    plan, days = _plan_name(plan), _retention_days(days)
    client, db = _writer(ctx)
    _retention_call(lambda: retention.set_plan(client, db, plan, days))
    _retention_call(lambda: retention.apply(client, db))
    _console().print(f"plan {plan}: {days} days; TTL applied", highlight=False, markup=False)


@retention_app.command("apply")
def retention_apply(ctx: typer.Context) -> None:
    """Recompile the TTL of events, run_state and step_state from the plan tables."""
    from sinks import retention

    client, db = _writer(ctx)
    applied = _retention_call(lambda: retention.apply(client, db))
    for table, clause in applied.items():
        _say(f"{table}: {'TTL ' + clause if clause else 'no expiry'}")
