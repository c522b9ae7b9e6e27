"""SQL building blocks of the panel queries: template-variable filters and query text.

Each filter is wrapped in ``$__conditionalAll`` so *All* costs nothing (see ``dashboards.panels``)."""

from __future__ import annotations


def _cond(variable: str, condition: str) -> str:
    return f"$__conditionalAll({condition}, ${variable})"


def values_of(variable: str) -> str:
    """The values selected in a multi-value dashboard variable, as a one-column subquery.

    No value is ever placed in the SQL as text ClickHouse parses: Grafana writes the selection
    with ``:percentencode`` (Grafana's ``encodeURIComponentStrict``: only ``A-Z a-z 0-9 - _ . ~``
    and ``%XX`` remain, so nothing can end the literal or escape its quote, whatever the value;
    ``:singlequote`` / ``:sqlstring`` leave ``\\``, which ClickHouse reads as an escape) and
    ClickHouse decodes it. Several values arrive as ``{a,b}`` (encoded as a whole), one value of
    a single-value selection as itself. A value holding a comma and wrapped in braces reads as
    several values, as if each had been selected; it can never become SQL. ``$__conditionalAll``
    drops the whole condition for *All*, before this runs. The report binds the same encoded
    text as a server-side parameter instead (``macros.expand_bound``)."""
    return (f"(WITH decodeURLComponent('${{{variable}:percentencode}}') AS v "
            "SELECT arrayJoin(if(v LIKE '{%}', splitByChar(',', substring(v, 2, length(v) - 2)), [v])))")


def is_in(column: str, variable: str) -> str:
    """``column`` is one of the values selected in ``variable`` (always true for *All*)."""
    return _cond(variable, f"{column} IN {values_of(variable)}")


def run_filter(prefix: str = "") -> str:
    """All seven run dimensions (``run_stats_state`` and ``runs`` have the same columns)."""
    p = prefix
    return " AND ".join([
        is_in(f"{p}account_id", "account"),
        is_in(f"{p}workflow_id", "workflow"),
        is_in(f"toString({p}workflow_version)", "version"),
        is_in(f"{p}workflow_type", "type"),
        is_in(f"{p}trigger", "trigger"),
        is_in(f"{p}site_id", "site"),
        is_in(f"{p}card_id", "card"),
    ])


def _workflows_matching() -> str:
    """Workflows that had runs of the selected type/trigger/site/card in the time range."""
    return ("workflow_id IN (SELECT DISTINCT workflow_id FROM run_stats_state WHERE $__timeFilter(bucket) AND "
            + " AND ".join([is_in("workflow_type", "type"), is_in("trigger", "trigger"),
                            is_in("site_id", "site"), is_in("card_id", "card")]) + ")")


def step_filter(with_version: bool = True) -> str:
    """Step panels: account, workflow (and version) directly, the other dimensions through the
    workflows whose runs match."""
    parts = [is_in("account_id", "account"), is_in("workflow_id", "workflow")]
    if with_version:
        parts.append(is_in("toString(workflow_version)", "version"))
    parts.append(_workflows_matching())
    return " AND ".join(parts)


ACCOUNT = is_in("account_id", "account")
RUNS = run_filter()


def sql_text(text: str) -> str:
    """Dedent a query for readability in Grafana's editor (one space per indentation level)."""
    lines = [line.rstrip() for line in text.strip("\n").splitlines()]
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


# Divides a per-interval count into a per-minute rate.
PER_MINUTE = "($__interval_s / 60)"
