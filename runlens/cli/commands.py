"""Replay and stop as commands: ``runlens runs replay``, ``runs stop`` and ``runs commands``
(registered on the ``runs`` group by ``runlens.cli``).

``replay`` and ``stop`` first read, through the account-scoped read path, that the run exists in
the account (else one line "run X not found in account A", exit 1, nothing published) and, for
a stop, that it has not finished; then they publish one command (docs/commands.md) on
``<prefix>.commands``, keyed by the run id, and print its command id once the broker
acknowledged it. Publishing the same ``--command-id`` again is harmless: the engine acts once
and the warehouse keeps one row. ``commands`` lists an account's commands and their outcomes,
newest first.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from runlens.cli.common import BadArgument, RawCsvOpt, UserError, err, printable, settings_of, shown, text_values
from runlens.cli.explore_common import (
    AccountOpt,
    Format,
    FormatOpt,
    RunIdArg,
    as_records,
    build_query,
    client_of,
    run_rows,
    say,
    write_table,
)
from schemas.commands import OVERRIDABLE_FIELDS, CommandAction, override_problem

_COMMAND_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", re.ASCII)
FINISHED = ("success", "failed", "stopped")
MAX_LIST = 10_000

CommandIdOpt = Annotated[str | None, typer.Option(
    "--command-id", callback=text_values,
    help="Id of this command (letters, digits, . _ : -, at most 128): sending the same id again acts once. "
         "Default: a new random id.")]


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``FIELD=VALUE`` items as overrides: BadArgument for a malformed item, a field that is not
    overridable, a bad value or a field given twice."""
    found: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name or not value:
            raise BadArgument(f"--set: {shown(item)} is not FIELD=VALUE")
        problem = override_problem(name, value)
        if problem is not None:
            raise BadArgument(f"--set: {printable(problem, one_line=True)}")
        if name in found:
            raise BadArgument(f"--set: {name} given twice")
        found[name] = value
    return found


def _command_id(value: str | None) -> str | None:
    if value is not None and not _COMMAND_ID.fullmatch(value):
        raise BadArgument(f"--command-id: {shown(value)} is not an id (letters, digits, . _ : -, 1..128 "
                          "characters, starting with a letter or digit)")
    return value


def _run_of(ctx: typer.Context, account: str, run_id: str) -> dict[str, Any]:
    """The run's row, read through the account-scoped read path; UserError when the account has
    no such run (whoever else may have one)."""
    from dashboards import runs as rq

    columns, rows = run_rows(client_of(ctx), build_query(lambda: rq.run_detail(account, run_id)))
    if not rows:
        raise UserError(f"run {shown(run_id)} not found in account {shown(account)}")
    return as_records(columns, rows)[0]


def _publish(ctx: typer.Context, account: str, run_id: str, action: CommandAction, *, modified: bool = False,
             overrides: dict[str, str] | None = None, command_id: str | None = None) -> str:
    from embedded.stack import resolve_brokers
    from producers.commands import make_command, send_command
    from producers.kafka import CheckedProducer
    from schemas.events import ReplayMode

    mode = None if action is CommandAction.STOP else (ReplayMode.MODIFIED if modified else ReplayMode.EXACT)
    try:
        command = make_command(account, run_id, action, mode=mode, overrides=overrides, command_id=command_id)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadArgument(printable(f"{'.'.join(map(str, first['loc']))}: {first['msg']}", one_line=True)) from None
    settings = settings_of(ctx)
    producer = CheckedProducer(resolve_brokers(settings))
    send_command(producer, settings.commands_topic, command)
    return command.command_id


def runs_replay(
    ctx: typer.Context,
    run_id: RunIdArg,
    account: AccountOpt,
    modified: Annotated[bool, typer.Option(
        "--modified", help="A modified replay: the workflow's current version, run manually, with --set values.")]
    = False,
    sets: Annotated[list[str], typer.Option(
        "--set", metavar="FIELD=VALUE", callback=text_values,
        help=f"With --modified: a field of the replay ({', '.join(OVERRIDABLE_FIELDS)}). Repeatable.")] = [],  # noqa: B006
    command_id: CommandIdOpt = None,
) -> None:
    """Ask the engine to replay a run (exact: same version, trigger and contact); prints the command id."""
    overrides = parse_overrides(sets)
    if overrides and not modified:
        raise BadArgument("--set needs --modified (an exact replay changes nothing)")
    _command_id(command_id)
    run = _run_of(ctx, account, run_id)
    if run["status"] not in FINISHED:
        raise UserError(f"run {shown(run_id)} is still {run['status']}: stop it first or wait until it finishes")
    sent = _publish(ctx, account, run_id, CommandAction.REPLAY, modified=modified, overrides=overrides,
                    command_id=command_id)
    say(sent)
    err.print(f"replay of {printable(run_id, one_line=True)} requested; `runlens runs commands --run "
              f"{printable(run_id, one_line=True)}` shows what became of it", markup=False, highlight=False,
              soft_wrap=True)


def runs_stop(ctx: typer.Context, run_id: RunIdArg, account: AccountOpt, command_id: CommandIdOpt = None) -> None:
    """Ask the engine to stop a running run (its finished steps stay); prints the command id."""
    _command_id(command_id)
    run = _run_of(ctx, account, run_id)
    if run["status"] in FINISHED:
        raise UserError(f"run {shown(run_id)} already finished ({run['status']}): nothing to stop")
    say(_publish(ctx, account, run_id, CommandAction.STOP, command_id=command_id))


COMMAND_COLUMNS = ("command_id", "run_id", "action", "mode", "overrides", "requested_by", "requested_at",
                   "outcome", "new_run_id", "reason", "decided_at")

TABLE_COLUMNS = ("requested_at", "command_id", "run_id", "action", "mode", "overrides", "outcome", "new_run_id",
                 "reason")


def command_list(account: str, run_id: str | None, limit: int) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of ``runs commands``: one account, every value bound."""
    if not account.strip():
        raise BadArgument("--account: an account is required (every query reads one account)")
    where = "account_id = {account:String}" + (" AND run_id = {run:String}" if run_id is not None else "")
    sql = (f"SELECT {', '.join(COMMAND_COLUMNS)} FROM commands WHERE {where} "
           "ORDER BY requested_at DESC, command_id DESC LIMIT {limit:UInt32}")
    params: dict[str, Any] = {"account": account, "limit": limit}
    if run_id is not None:
        params["run"] = run_id
    return sql, params


def runs_commands(
    ctx: typer.Context,
    account: AccountOpt,
    run_id: Annotated[str | None, typer.Option("--run", help="Only the commands of this run.",
                                                 callback=text_values)] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIST, help=f"Most commands listed (1..{MAX_LIST:,}).")] = 100,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Replay and stop commands of one account and what became of them, newest first."""
    from runlens.cli.common import run_query

    sql, params = command_list(account, run_id, limit)
    result = run_query(client_of(ctx), sql, params)
    rows = [list(row) for row in result.result_rows]
    at = COMMAND_COLUMNS.index("overrides")
    outcome = COMMAND_COLUMNS.index("outcome")
    for row in rows:
        if format is not Format.json:
            row[at] = ", ".join(f"{k}={v}" for k, v in sorted((row[at] or {}).items()))
        if format is Format.table and row[outcome] is None:
            row[outcome] = "(pending)"
    if format is Format.table:   # a terminal's width: who asked and when it was decided in csv / json
        keep = [COMMAND_COLUMNS.index(c) for c in TABLE_COLUMNS]
        write_table(list(TABLE_COLUMNS), [[row[i] for i in keep] for row in rows], format)
        return
    write_table(list(COMMAND_COLUMNS), rows, format, raw_csv)
