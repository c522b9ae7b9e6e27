"""The report's "Workflows needing attention" section: the facts query in the dashboards' dialect
(``attention.facts_sql`` with the account and workflow variables, bound by the report like a
panel's values), ranked by ``attention.rank``, as one HTML table.

A failing query is shown in the section (the rest of the report stands). Read-only.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from dashboards import attention as at
from dashboards.definitions.filters import is_in

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

SECTION_ID = "attention"
TITLE = "Workflows needing attention"
MAX_ROWS = 20


def facts_sql() -> str:
    """The facts query with the dashboards' account and workflow variables and time macros."""
    return at.facts_sql(at.grafana_dialect(is_in("account_id", "account"), is_in("workflow_id", "workflow")))


@dataclass
class AttentionSection:
    workflows: list[at.Assessment] = field(default_factory=list)
    sql: str = ""
    params: dict[str, str] = field(default_factory=dict)
    error: str | None = None


def collect(client: Client, sql: str, params: Mapping[str, str], since: datetime, until: datetime,
            limit: int = MAX_ROWS) -> AttentionSection:
    """Run the expanded ``facts_sql`` and rank its rows; a failure is kept in the section."""
    section = AttentionSection(sql=sql, params=dict(params))
    try:
        result = client.query(sql, parameters=dict(params))
        rows: list[dict[str, Any]] = [dict(zip(result.column_names, row, strict=False))
                                      for row in result.result_rows]
        section.workflows = at.rank(rows, at.Window(since, until), limit)
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the page
        section.error = str(exc).strip().split("\n")[0][:300] or exc.__class__.__name__
    return section


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def section_html(section: AttentionSection) -> str:
    """The section: one row per workflow (rank, account, workflow, score) with its reasons, their
    numbers and where to drill in."""
    intro = ("<p>Workflows ranked by score, the sum of their reasons' points (formula: README, "
             "<code>dashboards/attention.py</code>); each reason names the command or dashboard to drill in. "
             "Also on the command line: <code>runlens attention</code>.</p>")
    query = (f'<details class="sql"><summary>SQL</summary><pre>{_esc(section.sql)}'
             + "".join(f"\n-- {{{_esc(k)}:String}} = {_esc(v)}" for k, v in sorted(section.params.items()))
             + "</pre></details>")
    head = f'<section id="{SECTION_ID}"><h2>{TITLE}</h2>{intro}'
    if section.error:
        return f'{head}<p class="error">query failed: {_esc(section.error)}</p>{query}</section>'
    if not section.workflows:
        return f'{head}<p class="empty">No workflow needs attention in this window.</p>{query}</section>'
    rows = []
    for i, a in enumerate(section.workflows, 1):
        reasons = "".join(
            f'<li data-reason="{_esc(r.kind)}"><b>{_esc(r.kind)}</b> ({r.points:.1f} points): {_esc(r.summary)}'
            f'<br><span class="drill">{" &middot; ".join(f"<code>{_esc(d)}</code>" for d in r.drill)}</span></li>'
            for r in a.reasons)
        rows.append(f'<tr data-workflow="{_esc(a.workflow_id)}"><td>{i}</td><td>{_esc(a.account_id)}</td>'
                    f"<td>{_esc(a.workflow_name)}<br><code>{_esc(a.workflow_id)}</code></td>"
                    f"<td>{a.score:.1f}</td><td><ul>{reasons}</ul></td></tr>")
    table = ('<table class="attention"><thead><tr><th>#</th><th>account</th><th>workflow</th><th>score</th>'
             f'<th>reasons</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
    return f"{head}{table}{query}</section>"


CSS = """
table.attention { border-collapse: collapse; background: #fff; margin: 8px 0; font-size: 13px; }
table.attention th, table.attention td { border: 1px solid #d0d7de; padding: 4px 8px; vertical-align: top;
  text-align: left; }
table.attention ul { margin: 0; padding-left: 16px; }
table.attention .drill code { font-size: 11px; color: #57606a; }
"""
