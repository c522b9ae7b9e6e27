"""Dashboard: Workflow Runs, the product's run list (issue 15).

One row per run, newest first, with every filter of the product's run list as a variable: the
time picker (start time; quick ranges Today, Last 7 days, Last 30 days, or a custom range),
status (multi), workflow type, site, card, trigger, workflow, version (of the selected
workflows) and a typed-in run id or contact id. Counts by status above the table. Each run links
to its Run details dashboard (account and run id, the time range and the filters kept).

The list reads the ``runs`` view with the account filter on its key, which ClickHouse applies
before the view's fold, so a query reads the selected accounts' runs only, as ``runlens runs
list`` (``dashboards.runs``) does. It is the one
dashboard that must list runs one by one: no aggregate holds them.
"""

from __future__ import annotations

from dashboards.definitions.filters import RUNS, _cond, is_in, sql_text
from dashboards.definitions.model import Dashboard, Link, Panel
from dashboards.definitions.variables import RUN_LIST_VARIABLES

RUN_LIST_UID = "runlens-runs"
RUN_DETAILS_UID = "runlens-run"

def nested(sql: str) -> str:
    """``sql`` (a parenthesised subquery) indented to sit in a panel's query after ``FROM``:
    ``sql_text`` dedents a query by its least indented line, which a subquery must not be."""
    first, *rest = sql_text(sql).splitlines()
    return "\n".join([first, *(" " * 16 + line if line else line for line in rest)])


def run_fold(where: str) -> str:
    """The ``runs`` view's rows matching ``where`` (a subquery). ClickHouse applies a condition on
    the view's grouping key (account_id, run_id) before the view's fold of ``run_state``, whose
    sort key it is, so an account or run filter reads only those runs (EXPLAIN: the primary key
    condition reaches run_state; one granule for one run). site_id and card_id are '' rather than
    NULL, as in run_stats_state (the site / card variables' values)."""
    return nested(f"""(SELECT * REPLACE (ifNull(site_id, '') AS site_id, ifNull(card_id, '') AS card_id)
     FROM runs
     WHERE {where})""")


def text_value(variable: str) -> str:
    """The typed-in value of a single-value (textbox) variable, percent-encoded by Grafana and
    decoded by ClickHouse (the same form as ``values_of``)."""
    return f"decodeURLComponent('${{{variable}:percentencode}}')"


# The moment a run is placed at in the time range: its start (a pending run: its queue time),
# as `runlens runs list --since/--until` (RunFilters.where).
MOMENT = "coalesce(started_at, queued_at, finished_at)"

# The run list's filters: the seven dimensions, status, and a run id or contact id typed in
# (an empty textbox is no condition: $__conditionalAll drops it).
SEARCH = _cond("search", f"(run_id = {text_value('search')} OR contact_id = {text_value('search')})")
LIST_FILTER = " AND ".join([f"$__timeFilter({MOMENT})", RUNS, is_in("status", "status"), SEARCH])
LISTED_RUNS = run_fold(is_in("account_id", "account"))

# A data link to a run's details: account and run id from the clicked row, and the run's own
# time window (from a second before it was queued to a second after it finished, or now), so the
# details' step timeline spans the run rather than the list's range (the browser's back button
# returns to the list with its range and filters, which are in its URL).
WINDOW_COLUMNS = ("ifNull(toString(toUnixTimestamp64Milli(coalesce(queued_at, started_at, finished_at)) - 1000), "
                  "'now-24h') AS window_from, "
                  "if(finished_at IS NULL, 'now', toString(toUnixTimestamp64Milli(finished_at) + 1000)) AS window_to")
RUN_LINK = (f"/d/{RUN_DETAILS_UID}?var-account=${{__data.fields.account:percentencode}}"
            "&var-run=${__data.fields.run_id:percentencode}"
            "&from=${__data.fields.window_from:percentencode}&to=${__data.fields.window_to:percentencode}")
WORKFLOW_LINK = ("/d/runlens-workflow?var-account=${__data.fields.account:percentencode}"
                 "&var-workflow=${__data.fields.workflow_id:percentencode}&${__url_time_range}")

STATUS_COUNTS = ("success", "failed", "running", "pending", "stopped")

RUN_LIST = Dashboard(
    uid=RUN_LIST_UID,
    title="runlens / Workflow Runs",
    description="Every workflow run, newest first, with the run list's filters; click a run for its details.",
    time_from="now-24h",
    variables=tuple(v.name for v in RUN_LIST_VARIABLES),
    panels=(
        Panel(1, "Runs by status", "stat", sql_text(f"""
            SELECT count() AS runs,
                   {', '.join(f"countIf(status = '{s}') AS {s}" for s in STATUS_COUNTS)}
            FROM {LISTED_RUNS}
            WHERE {LIST_FILTER}"""),
            (0, 0, 24, 4), unit="short",
            description="The runs the filters select (start time in the range), by status."),
        Panel(2, "Workflow runs", "table", sql_text(f"""
            SELECT {MOMENT} AS started, workflow_name AS workflow, workflow_version AS version,
                   ifNull(workflow_version_name, '') AS version_name, status, duration_ms,
                   if(site_id = '', '', concat(ifNull(site_name, ''), ' (', site_id, ')')) AS site,
                   if(card_id = '', '', concat(ifNull(card_name, ''), ' (', card_id, ')')) AS card,
                   trigger, ifNull(contact_id, '') AS contact, workflow_type AS type,
                   ifNull(error_code, '') AS error_code, if(replay_of IS NULL, '', 'replay') AS replay,
                   run_id, workflow_id, account_id AS account, {WINDOW_COLUMNS}
            FROM {LISTED_RUNS}
            WHERE {LIST_FILTER}
            ORDER BY started DESC, run_id
            LIMIT 1000"""),
            (0, 4, 24, 20), paginate=True,
            links=(Link("run_id", "Run details", RUN_LINK), Link("workflow", "Drill into this workflow",
                                                                 WORKFLOW_LINK)),
            description="Newest first (at most 1,000 runs: narrow the filters or the time range for "
                        "older ones). Duration is start to finish; a running run has none yet. Click a "
                        "run id for its step log."),
    ),
)

__all__ = ["LISTED_RUNS", "LIST_FILTER", "MOMENT", "RUN_DETAILS_UID", "RUN_LINK", "RUN_LIST", "RUN_LIST_UID",
           "WINDOW_COLUMNS", "WORKFLOW_LINK", "nested", "run_fold", "text_value"]
