"""Retention by plan: the per-account expiry of runs and steps, as ClickHouse TTL.

The configuration lives in two tables (migration 005): ``retention_plans(plan, retention_days)``
and ``account_plans(account_id, plan, retention_days)`` (a non-NULL ``retention_days`` on the
account overrides its plan; 0 keeps forever). ClickHouse refuses dictionaries and joins in TTL
expressions (they are not deterministic), so ``apply`` compiles the configuration into a
constant mapping and sets it with ``ALTER TABLE ... MODIFY TTL`` on the stored tables::

    TTL <row time> + toIntervalDay(transform(toString(account_id), ['acme', ...], [7, ...], <default>))
        WHERE transform(...) > 0

A row is deleted at the first merge after it expired (``OPTIMIZE TABLE ... FINAL`` forces it).
Ingestion never reads this configuration, so a mistake in it cannot stop the pipeline; an
account without a plan (and no ``default`` plan) is kept forever.

Row time per table: ``events.ts``; a run's last known time in ``run_state`` (finish, else start,
queue or first step); a step attempt's finish (else start) in ``step_state``. The minute
aggregates (``*_stats_state``, ``queue_state``) hold no run details and are not expired here.
"""

from __future__ import annotations

from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from schemas.errors import InputError
from sinks.clickhouse import check_identifier

TTL_TABLES: dict[str, str] = {
    "events": "toDateTime(ts)",
    "run_state": "toDateTime(assumeNotNull(coalesce(finished_at, started_ts, queued_at, step_seen_at)))",
    "step_state": "toDateTime(assumeNotNull(coalesce(finished_at, started_ts)))",
    "run_notes": "toDateTime(ts)",   # failed runs/steps and replays, with run ids and error messages
}
DEFAULT_PLAN = "default"
CUSTOM_PLAN = "custom"
MAX_DAYS = 36_500


class RetentionError(InputError):
    """A retention setting that cannot be applied (unknown plan, bad number of days)."""

    code = "retention"


@dataclass(frozen=True)
class AccountRetention:
    account_id: str
    plan: str
    override_days: int | None
    days: int  # effective; 0 = kept forever


def _literal(text: str) -> str:
    """A ClickHouse string literal (account ids are data, quoted; DDL takes no parameters)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def plans(client: Client, db: str) -> dict[str, int]:
    db = check_identifier(db)
    rows = client.query(f"SELECT plan, retention_days FROM {db}.retention_plans FINAL ORDER BY plan").result_rows
    return {plan: int(days) for plan, days in rows}


def accounts(client: Client, db: str) -> list[AccountRetention]:
    db = check_identifier(db)
    table = plans(client, db)
    rows = client.query(f"SELECT account_id, plan, retention_days FROM {db}.account_plans FINAL "
                        "ORDER BY account_id").result_rows
    out = []
    for account, plan, override in rows:
        days = int(override) if override is not None else table.get(plan, table.get(DEFAULT_PLAN, 0))
        out.append(AccountRetention(account, plan, None if override is None else int(override), days))
    return out


def ttl_clause(time_expr: str, per_account: dict[str, int], default_days: int) -> str | None:
    """The TTL expression for one table, or None when nothing expires."""
    expiring = {a: d for a, d in sorted(per_account.items()) if d > 0 or default_days > 0}
    if not any(d > 0 for d in expiring.values()) and default_days <= 0:
        return None
    keys = ", ".join(_literal(a) for a in expiring)
    values = ", ".join(f"toUInt32({int(d)})" for d in expiring.values())
    days = (f"transform(toString(account_id), [{keys}], [{values}], toUInt32({int(default_days)}))"
            if expiring else f"toUInt32({int(default_days)})")
    return f"{time_expr} + toIntervalDay({days}) WHERE {days} > 0"


def _has_ttl(client: Client, db: str, table: str) -> bool:
    query = client.query("SELECT create_table_query FROM system.tables WHERE database = {db:String} "
                         "AND name = {t:String}", parameters={"db": db, "t": table}).result_rows
    return bool(query) and " TTL " in query[0][0]


def apply(client: Client, db: str) -> dict[str, str | None]:
    """Compile the plans into TTL on every stored table. Returns table -> TTL (None = no expiry)."""
    db = check_identifier(db)
    table = plans(client, db)
    per_account = {a.account_id: a.days for a in accounts(client, db)}
    default_days = table.get(DEFAULT_PLAN, 0)
    applied = {}
    for name, time_expr in TTL_TABLES.items():
        clause = ttl_clause(time_expr, per_account, default_days)
        if clause is not None:
            client.command(f"ALTER TABLE {db}.{name} MODIFY TTL {clause}")
        elif _has_ttl(client, db, name):
            client.command(f"ALTER TABLE {db}.{name} REMOVE TTL")
        applied[name] = clause
    return applied


def _check_days(days: int) -> int:
    if not 0 <= days <= MAX_DAYS:
        raise RetentionError(f"retention must be 0 (keep forever) to {MAX_DAYS} days, not {days}")
    return days


def set_plan(client: Client, db: str, plan: str, days: int) -> None:
    """Create or change a plan's number of days (then ``apply``)."""
    db = check_identifier(db)
    if not plan or not plan.strip() or plan == CUSTOM_PLAN:
        raise RetentionError(f"invalid plan name {plan!r}")
    client.insert(f"{db}.retention_plans", [[plan, _check_days(days)]], column_names=["plan", "retention_days"])


def set_account(client: Client, db: str, account: str, plan: str | None = None, days: int | None = None) -> None:
    """Put ``account`` on ``plan``, or on a custom number of days (then ``apply``)."""
    db = check_identifier(db)
    if not account or not account.strip():
        raise RetentionError("an account is required")
    if (plan is None) == (days is None):
        raise RetentionError("give a plan or a number of days")
    row: list[str | int | None]
    if days is not None:   # a custom number of days (so no plan)
        row = [account, CUSTOM_PLAN, _check_days(days)]
    else:
        known = plans(client, db)
        if plan not in known:
            raise RetentionError(f"unknown plan {plan!r} (plans: {', '.join(known) or 'none'})")
        row = [account, plan, None]
    client.insert(f"{db}.account_plans", [row], column_names=["account_id", "plan", "retention_days"])
