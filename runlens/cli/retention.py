"""`runlens retention`: how long each account's runs and steps are kept."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from dashboards import runs as rq
from runlens.cli.common import BadArgument, RawCsvOpt, UserError, settings_of, shown, text_values
from runlens.cli.explore_common import Format, FormatOpt, client_of, console_for, run_rows, say, write_table

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_Result = TypeVar("_Result")

retention_app = typer.Typer(help="Retention by plan: how long each account's runs and steps are kept.",
                            no_args_is_help=True, rich_markup_mode=None)


# --------------------------------------------------------------------------- retention


def _writer(ctx: typer.Context) -> tuple[Client, str]:
    """A writable warehouse client with the migrations applied: the configured server, else a
    running stack's warehouse process (as its writer), else the embedded data directory itself."""
    from embedded.stack import StackInfo, resolve_writer
    from sinks.clickhouse import WarehouseRefused, WarehouseUnavailable, connect, migrate

    settings = settings_of(ctx)
    running = settings.uses_embedded_warehouse and StackInfo.read(settings.stack_file) is not None
    dsn = resolve_writer(settings) if running or not settings.uses_embedded_warehouse else settings.embedded_dsn
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    try:
        client = connect(dsn, password=None if running else password)
        migrate(client, settings.database,
                cluster=None if settings.uses_embedded_warehouse else settings.clickhouse_cluster)
    except (WarehouseUnavailable, WarehouseRefused) as exc:
        raise UserError(f"cannot write to the warehouse: {str(exc).splitlines()[0]}") from None
    return client, settings.database


def _retention_days(days: int) -> int:
    from sinks.retention import MAX_DAYS

    if not 0 <= days <= MAX_DAYS:
        raise BadArgument(f"retention must be 0 (keep forever) to {MAX_DAYS} days, not {days}")
    return days


def _plan_name(plan: str) -> str:
    from sinks.retention import CUSTOM_PLAN

    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", plan, re.ASCII) or plan == CUSTOM_PLAN:
        raise BadArgument(f"invalid plan name {shown(plan)} (letters, digits, - and _, at most 64; "
                   f"not {CUSTOM_PLAN!r})")
    return plan


def _retention_call(fn: Callable[[], _Result]) -> _Result:
    from sinks.retention import RetentionError

    try:
        return fn()
    except RetentionError as exc:
        raise UserError(str(exc)) from None


@retention_app.command("show")
def retention_show(ctx: typer.Context, format: FormatOpt = Format.table, raw_csv: RawCsvOpt = False) -> None:
    """Plans and the accounts on them, with the days each account keeps (0 = forever)."""
    from sinks.retention import DEFAULT_PLAN

    client = client_of(ctx)
    _, plan_rows = run_rows(client, rq.Query("SELECT plan, retention_days FROM retention_plans FINAL ORDER BY plan"))
    plans: dict[str, int] = {plan: days for plan, days in plan_rows}
    _, account_rows = run_rows(client, rq.Query(
        "SELECT account_id, plan, retention_days FROM account_plans FINAL ORDER BY account_id"))
    rows = [["(plan)", plan, days] for plan, days in plan_rows]
    for account, plan, override in account_rows:
        days = override if override is not None else plans.get(plan, plans.get(DEFAULT_PLAN, 0))
        rows.append([account, plan, days])
    write_table(["account", "plan", "retention_days"], rows, format, raw_csv)


@retention_app.command("set")
def retention_set(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="The account.", callback=text_values)],
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
    say(f"{account}: {plan or (str(days) + ' days' if days else 'kept forever')}; TTL applied")


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
    console_for().print(f"plan {plan}: {days} days; TTL applied", highlight=False, markup=False)


@retention_app.command("apply")
def retention_apply(ctx: typer.Context) -> None:
    """Recompile the TTL of events, run_state and step_state from the plan tables."""
    from sinks import retention

    client, db = _writer(ctx)
    applied = _retention_call(lambda: retention.apply(client, db))
    for table, clause in applied.items():
        say(f"{table}: {'TTL ' + clause if clause else 'no expiry'}")
