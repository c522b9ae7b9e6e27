"""``runlens attention``: the workflows of one account needing attention, ranked by score.

The facts are read by one account-scoped query with every value bound (``dashboards.attention``);
the reasons and the score are computed from them by its pure ``rank``. Read-only: running it
again on the same data gives the same answer. Bad input is one line and exit code 2 before any
query runs.
"""

from __future__ import annotations

from typing import Annotated

import orjson
import typer

from dashboards import attention as at
from runlens.cli.common import RawCsvOpt, parse_when
from runlens.cli.explore_common import (
    AccountOpt,
    Format,
    FormatOpt,
    as_records,
    build_query,
    client_of,
    json_doc,
    now_utc,
    rfc3339,
    run_rows,
    say,
    write_table,
)

WindowSinceOpt = Annotated[str, typer.Option(
    "--since", help="Start of the window judged: a duration ago (24h, 7d), a date or RFC 3339. Its baseline is "
                    "the 4 windows before (at most 28 days).")]
WindowUntilOpt = Annotated[str | None, typer.Option(
    "--until", help="End of the window (default: now; same forms as --since).")]
LimitOpt = Annotated[int, typer.Option(help=f"Most workflows listed (1..{at.MAX_LIMIT}).")]

TABLE_COLUMNS = ["rank", "workflow_id", "workflow_name", "score", "reason", "points", "details", "drill_in"]
CSV_COLUMNS = ["rank", "account_id", "workflow_id", "workflow_name", "score", "reason", "points", "details",
               "numbers", "drill_in"]


def attention(
    ctx: typer.Context,
    account: AccountOpt,
    since: WindowSinceOpt = "7d",
    until: WindowUntilOpt = None,
    limit: LimitOpt = 20,
    format: FormatOpt = Format.table,
    raw_csv: RawCsvOpt = False,
) -> None:
    """Workflows needing attention, highest score first, each with its reasons, their numbers and
    where to drill in: failure rate against its own baseline, new error signatures, the current
    version against the previous one, silent, stuck runs, a growing queue, late delays and
    replays failing again (score formula: README, dashboards/attention.py)."""
    now = now_utc()
    since_at = parse_when(since, "--since", now)
    until_at = parse_when(until, "--until", now) if until is not None else now
    build_query(lambda: at.check_limit(limit))
    query = build_query(lambda: at.facts(account, since_at, until_at))
    columns, rows = run_rows(client_of(ctx), query)
    window = at.Window(since_at, until_at)
    ranked = at.rank(as_records(columns, rows), window, limit)
    if format is Format.json:
        json_doc({"account": account, "since": rfc3339(since_at), "until": rfc3339(until_at),
                  "workflows": [{"rank": i, "workflow_id": a.workflow_id, "workflow_name": a.workflow_name,
                                 "score": a.score,
                                 "reasons": [{"reason": r.kind, "points": round(r.points, 1), "details": r.summary,
                                              "numbers": r.numbers, "drill_in": list(r.drill)}
                                             for r in a.reasons]}
                                for i, a in enumerate(ranked, 1)]})
        return
    table: list[list[object]] = []
    for i, a in enumerate(ranked, 1):
        for j, r in enumerate(a.reasons):
            first = j == 0 or format is Format.csv
            head: list[object] = [i if first else "", a.workflow_id if first else "",
                                  a.workflow_name if first else "", a.score if first else ""]
            if format is Format.csv:
                table.append([i, a.account_id, a.workflow_id, a.workflow_name, a.score, r.kind, round(r.points, 1),
                              r.summary, orjson.dumps(r.numbers, default=str).decode(), " | ".join(r.drill)])
            else:
                table.append([*head, r.kind, round(r.points, 1), r.summary, r.drill[0]])
    if format is Format.csv:
        write_table(CSV_COLUMNS, table, format, raw_csv)
        return
    if not table:
        say(f"no workflow of this account needs attention from {rfc3339(since_at)} to {rfc3339(until_at)}")
        return
    write_table(TABLE_COLUMNS, table, format)
