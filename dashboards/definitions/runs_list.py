"""Dashboard: Workflow Runs, the product's run list (issue 15).

One row per run, newest first, with every filter of the product's run list as a variable: the
time picker (start time; quick ranges Today, Last 7 days, Last 30 days, or a custom range),
status (multi), workflow type, site, card, trigger, workflow, version (of the selected
workflows) and a typed-in run id or contact id. Counts by status above the table. Each run links
to its Run details dashboard (account and run id, the time range and the filters kept).

The list reads the ``runs`` view with the account filter and the run ids of the time range (from
``run_times``) on its key, which ClickHouse applies before the view's fold, so a query folds the
selected accounts' runs of the range only, as ``runlens runs list`` (``dashboards.runs``) does.
It is the one dashboard that must list runs one by one: no aggregate holds them.
"""

from __future__ import annotations

from dashboards.definitions.filters import RUNS, _cond, is_in, sql_text
from dashboards.definitions.model import Dashboard, Link, Panel
from dashboards.definitions.variables import RUN_LIST_VARIABLES
from dashboards.runs import SCAN_ROWS_PER_RUN

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
# The runs folded: those of the selected accounts with a moment in the time range, found in
# ``run_times`` (ordered by time; migration 012) rather than by folding every run of the
# accounts. A run's place in the range is one of its moments, so none is missed; LIST_FILTER
# then drops the runs only queued or finished in the range.
RUNS_IN_RANGE = ("run_id IN (SELECT run_id FROM run_times "
                 f"WHERE {is_in('account_id', 'account')} AND $__timeFilter(moment))")
LISTED_RUNS = run_fold(f"{is_in('account_id', 'account')} AND {RUNS_IN_RANGE}")

# The table shows the newest LIST_LIMIT runs: it folds only the runs with a row among the
# LIST_SCAN newest rows of run_times in the range (``nearest``), and the range's other runs only
# when those may not hold the newest LIST_LIMIT matching runs (``complete`` false: the reasoning
# of ``runlens runs list``, dashboards.runs.newest_first). ``complete`` is a constant ClickHouse
# computes before reading, so the second fold reads nothing when the first suffices.
LIST_LIMIT = 1000
LIST_SCAN = LIST_LIMIT * SCAN_ROWS_PER_RUN
_ACCOUNTS = is_in("account_id", "account")
NEAREST = sql_text(f"""
    nearest AS (SELECT run_id, moment FROM run_times WHERE {_ACCOUNTS} AND $__timeFilter(moment)
                ORDER BY moment DESC LIMIT {LIST_SCAN}),
    nearest_runs AS {run_fold(f"{_ACCOUNTS} AND run_id IN (SELECT run_id FROM nearest)")},
    (SELECT count() FROM nearest) < {LIST_SCAN}
        OR (SELECT count() FROM nearest_runs WHERE {LIST_FILTER}
            AND {MOMENT} > (SELECT min(moment) FROM nearest)) >= {LIST_LIMIT} AS complete""")
# (``complete`` sits in the key's subquery: a constant false filter on the view would still
# fold it, an empty set of run ids reads nothing)
OTHER_RUNS = run_fold(f"{_ACCOUNTS} AND run_id IN (SELECT run_id FROM run_times WHERE NOT complete "
                      f"AND {_ACCOUNTS} AND $__timeFilter(moment)) AND run_id NOT IN (SELECT run_id FROM nearest)")

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
            WITH {nested(NEAREST)}
            SELECT {MOMENT} AS started, workflow_name AS workflow, workflow_version AS version,
                   ifNull(workflow_version_name, '') AS version_name, status, duration_ms,
                   if(site_id = '', '', concat(ifNull(site_name, ''), ' (', site_id, ')')) AS site,
                   if(card_id = '', '', concat(ifNull(card_name, ''), ' (', card_id, ')')) AS card,
                   trigger, ifNull(contact_id, '') AS contact, workflow_type AS type,
                   ifNull(error_code, '') AS error_code, if(replay_of IS NULL, '', 'replay') AS replay,
                   run_id, workflow_id, account_id AS account, {WINDOW_COLUMNS}
            FROM (SELECT * FROM nearest_runs UNION ALL SELECT * FROM {OTHER_RUNS})
            WHERE {LIST_FILTER}
            ORDER BY started DESC, run_id
            LIMIT {LIST_LIMIT}"""),
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
