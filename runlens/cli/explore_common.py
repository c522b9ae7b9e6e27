"""What the run explorer's commands (`runs`, `export`, `sql`, `retention`) share: their options and
the filters, query and output plumbing. Imports no command module."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer

from dashboards import runs as rq
from dashboards import sqllib
from runlens.cli.common import (
    CSV_GUARD_HELP,
    BadArgument,
    OutputFormat,
    err,
    out,
    parse_when,
    printable,
    query_client,
    run_query,
    settings_of,
    shown,
    text_values,
    write_rows,
)

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from rich.console import Console

Format = OutputFormat   # the same three formats as every other command


class ExportKind(StrEnum):
    runs = "runs"
    steps = "steps"
    failures = "failures"


AccountOpt = Annotated[str, typer.Option(
    "--account", "-a", envvar="RUNLENS_ACCOUNT", show_envvar=True, callback=text_values,
    help="The account (tenant) to read. Every command reads exactly one.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format. " + CSV_GUARD_HELP)]
SinceOpt = Annotated[str | None, typer.Option(
    help="Runs started from: now, today, yesterday, 24h / 7d / 30d (ago), a date or an RFC 3339 time "
         "(1900..2299).")]
UntilOpt = Annotated[str | None, typer.Option(help="Runs started before (same forms as --since).")]
StatusOpt = Annotated[list[str], typer.Option(
    "--status", "-s", callback=text_values,
    help="success, failed, running, pending, stopped. Repeat or comma-separate.")]
TypeOpt = Annotated[list[str], typer.Option(
    "--type", callback=text_values, help="Workflow type: card, site, contact, survey, integration. Repeatable.")]
WorkflowOpt = Annotated[list[str], typer.Option("--workflow", "-w", callback=text_values,
                                                help="Workflow id or name. Repeatable.")]
VersionOpt = Annotated[list[str], typer.Option("--version", callback=text_values,
                                               help="Workflow version number (0..4294967295). Repeatable.")]
SiteOpt = Annotated[list[str], typer.Option("--site", callback=text_values, help="Site id or name. Repeatable.")]
CardOpt = Annotated[list[str], typer.Option("--card", callback=text_values, help="Card id or name. Repeatable.")]
TriggerOpt = Annotated[list[str], typer.Option(
    "--trigger", callback=text_values, help="manual, automatic, api, scheduled. Repeatable.")]
ContactOpt = Annotated[list[str], typer.Option("--contact", callback=text_values, help="Contact id. Repeatable.")]
ErrorCodeOpt = Annotated[list[str], typer.Option(
    "--error-code", callback=text_values, help="Run error code. Repeatable.")]
ErrorClassOpt = Annotated[list[str], typer.Option(
    "--error-class", callback=text_values, help="config, data, external_service, logic, internal. Repeatable.")]
ReplaysOpt = Annotated[str | None, typer.Option(
    "--replays", callback=text_values, help="only: replays only; exclude: original runs only.")]
SortOpt = Annotated[str, typer.Option(
    callback=text_values,
    help="Sort key, '-' for descending or KEY:asc|desc: started_at, queued_at, finished_at, duration, "
         "queue, workflow, version, status, trigger, site, card, run_id.")]
RunIdArg = Annotated[str, typer.Argument(help="The run id.", callback=text_values)]

# --------------------------------------------------------------------------- plumbing


def now_utc() -> datetime:
    return datetime.now(UTC)


def _values(items: Sequence[str]) -> tuple[str, ...]:
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


def _versions(items: Sequence[str]) -> tuple[int, ...]:
    out = []
    for text in _values(items):
        match = _VERSION.fullmatch(text)
        if not match or int(match.group(1)) > MAX_VERSION:
            raise BadArgument(f"--version: {shown(text)} is not a version number (0..{MAX_VERSION})")
        out.append(int(match.group(1)))
    return tuple(out)


_Built = TypeVar("_Built")


def build_query(make: Callable[[], _Built]) -> _Built:
    """Build a query from the user's input; its QueryError is a bad argument (exit code 2)."""
    try:
        return make()
    except (rq.QueryError, sqllib.QueryError) as exc:
        raise BadArgument(printable(str(exc), one_line=True)) from None


def run_filters(account: str, since: str | None, until: str | None, status: Sequence[str], type_: Sequence[str],
                workflow: Sequence[str], version: Sequence[str], site: Sequence[str], card: Sequence[str],
                trigger: Sequence[str], contact: Sequence[str], error_code: Sequence[str] = (),
                error_class: Sequence[str] = (), replays: str | None = None) -> rq.RunFilters:
    now = now_utc()
    since_at = parse_when(since, "--since", now) if since is not None else None
    until_at = parse_when(until, "--until", now) if until is not None else None
    return build_query(lambda: rq.RunFilters(
        account=account,
        since=since_at,
        until=until_at,
        statuses=_values(status), types=_values(type_), workflows=_values(workflow),
        versions=_versions(version), sites=_values(site), cards=_values(card), triggers=_values(trigger),
        contacts=_values(contact), error_codes=_values(error_code), error_classes=_values(error_class),
        replays=replays))


def client_of(ctx: typer.Context) -> Client:
    return query_client(settings_of(ctx))


def run_rows(client: Client, query: rq.Query) -> tuple[list[str], list[Sequence[Any]]]:
    """The columns and rows of ``query`` (a failed query is the one-line UserError)."""
    result = run_query(client, query.sql, query.params)
    return list(result.column_names), list(result.result_rows)


def rfc3339(value: datetime) -> str:
    """A UTC time as RFC 3339 with milliseconds and Z (naive times from the warehouse are UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def plain_value(value: Any, fmt: Format) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, (list, tuple)):
        if fmt is Format.json:
            return [plain_value(v, fmt) for v in value]
        if fmt is Format.csv:
            return orjson.dumps([plain_value(v, Format.json) for v in value]).decode()
        return ", ".join(str(plain_value(v, fmt)) for v in value)
    return value


def write_table(columns: list[str], rows: Iterable[Sequence[Any]], fmt: Format, raw_csv: bool = False) -> None:
    """Rows through ``write_rows``: a printable, markup-free table; guarded CSV unless ``raw_csv``."""
    cooked = [[plain_value(v, fmt) for v in row] for row in rows]
    write_rows(list(columns), cooked, OutputFormat(fmt.value), raw_csv=raw_csv)


def as_records(columns: list[str], rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=False)) for row in rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return rfc3339(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def json_doc(document: Any) -> None:
    """One JSON document (times as RFC 3339 UTC, like every other output)."""
    sys.stdout.write(orjson.dumps(_jsonable(document), default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


def console_for(stderr: bool = False) -> Console:
    return err if stderr else out


def say(line: str) -> None:
    """One line that may hold event data: printable, no markup."""
    console_for().print(printable(line, one_line=True), highlight=False, markup=False, soft_wrap=True)
