"""Dashboard: Run details, one run's execution log (issue 15).

Variables: account and run (the run id, set by the link from Workflow Runs). Panels: the
overview (workflow, version, contact, times, duration, final status, trigger, replay lineage),
the step timeline (each step attempt a bar from its start to its finish, coloured by status:
retries show as further bars on the step's lane, the gap before them is the retry's wait, delay
steps span their wait), the step log (every attempt with its data, error details, condition
result and branch, action kind and target) and the run's replay lineage with each run's outcome.

Every panel reads the run's own rows only: the ``runs`` / ``steps`` views filtered on (account,
run), which ClickHouse applies before the views' fold of ``run_state`` / ``step_state`` (their
sort key), so a panel reads a handful of rows whatever the history. Replays are found through
``events`` (their replay_of, a bloom-filter index), then read from ``run_state`` by key.

The timeline is a horizontal, stacked ``barchart`` (core Grafana; a Gantt chart): one bar per
step attempt, in the order they started, from its start to its finish in seconds since the
run's first step started. The first series, ``offset_s``, is the space before the bar (drawn
transparent and left out of the legend and tooltip), then the attempt's duration in the series
of its status (``success_s``, ``failed_s``, ``running_s`` up to the end of the time range,
``skipped_s``). A retry is a
bar of its own (``#2``...) whose offset shows the wait before it; a delay step's bar is its wait.
A ``state-timeline`` would put attempts on the dashboard's time axis, which the link sets to the
run's window, but needs each attempt's end as a row of its own and value mappings; the bar chart
reads one row per attempt, like the step log, and the other renderers (the HTML report) draw it.
"""

from __future__ import annotations

from dashboards.definitions.filters import ACCOUNT, is_in, sql_text
from dashboards.definitions.model import Dashboard, Link, Panel
from dashboards.definitions.runs_list import RUN_DETAILS_UID, RUN_LINK, WINDOW_COLUMNS, nested, run_fold
from dashboards.definitions.variables import RUN_DETAILS_VARIABLES

RUN = is_in("run_id", "run")
THE_RUN = run_fold(f"{ACCOUNT} AND {RUN}")

# The step attempts of the selected run: the `steps` view, its key filtered before its fold.
STEPS = nested(f"""(SELECT * FROM steps
     WHERE {ACCOUNT} AND {RUN})""")

# The selected run's original (itself when it is no replay) as (account, run id) pairs, folded
# once, and every replay of it: the replays' run ids are read from `events` (replay_of, with its
# bloom filter: migration 011, which `has` uses), so only those runs and the original are folded,
# by key, whatever the account's size.
ORIGINALS = f"(SELECT groupArray((account_id, coalesce(replay_of, run_id))) FROM {THE_RUN})"
LINEAGE = run_fold(sql_text(f"""
    {ACCOUNT} AND ((account_id, run_id) IN originals
                   OR run_id IN (SELECT run_id FROM events
                                  WHERE {ACCOUNT} AND has(arrayMap(pair -> pair.2, originals), replay_of)))"""))


# Overview: one (field, value) row each, for the selected run.
OVERVIEW_FIELDS = (
    ("Workflow", "workflow_name"),
    ("Workflow id", "workflow_id"),
    ("Workflow type", "workflow_type"),
    ("Version", "toString(workflow_version)"),
    ("Version name", "ifNull(workflow_version_name, '')"),
    ("Contact", "ifNull(contact_id, '')"),
    ("Status", "status"),
    ("Trigger", "trigger"),
    ("Site", "if(site_id = '', '', concat(ifNull(site_name, ''), ' (', site_id, ')'))"),
    ("Card", "if(card_id = '', '', concat(ifNull(card_name, ''), ' (', card_id, ')'))"),
    ("Queued", "ifNull(toString(queued_at), '')"),
    ("Started", "ifNull(toString(started_at), '')"),
    ("Finished", "ifNull(toString(finished_at), '')"),
    ("Queue wait (ms)", "ifNull(toString(queue_ms), '')"),
    ("Duration (ms)", "ifNull(toString(duration_ms), '')"),
    ("Error code", "ifNull(error_code, '')"),
    ("Error class", "ifNull(error_class, '')"),
    ("Error message", "ifNull(error_message, '')"),
    ("Replay of (original run)", "ifNull(replay_of, '')"),
    ("Replay mode", "ifNull(replay_mode, '')"),
)

# The timeline's series after the offset: an attempt's duration under its status.
TIMELINE_STATES = ("success", "failed", "running", "skipped")
# The timeline's first series: the space before each bar, to draw transparent.
TIMELINE_OFFSET = "offset_s"

RUN_DETAILS = Dashboard(
    uid=RUN_DETAILS_UID,
    title="runlens / Run details",
    description="One workflow run: overview, step timeline, step log with errors and data, replays.",
    time_from="now-24h",
    variables=tuple(v.name for v in RUN_DETAILS_VARIABLES),
    panels=(
        Panel(1, "Overview", "table", sql_text(f"""
            SELECT run_id, field, value
            FROM {THE_RUN}
            ARRAY JOIN [{', '.join(f"'{label}'" for label, _ in OVERVIEW_FIELDS)}] AS field,
                       [{', '.join(expr for _, expr in OVERVIEW_FIELDS)}] AS value
            ORDER BY run_id, indexOf([{', '.join(f"'{label}'" for label, _ in OVERVIEW_FIELDS)}], field)"""),
            (0, 0, 8, 14),
            description="The run's latest state; times are UTC, durations in milliseconds."),
        Panel(2, "Step timeline", "barchart", sql_text(f"""
            SELECT step_attempt, offset_s,
                   {', '.join(f"if(status = '{s}', duration_s, 0) AS {s}_s" for s in TIMELINE_STATES)}
            FROM (
                SELECT account_id, run_id, started_at, step_index, attempt, status,
                       concat(leftPad(toString(step_index + 1), 2, '0'), ' ', step_name,
                              if(attempt > 1, concat(' #', toString(attempt)), '')) AS step_attempt,
                       dateDiff('millisecond', min(started_at) OVER (PARTITION BY account_id, run_id), started_at)
                           / 1000 AS offset_s,
                       greatest(dateDiff('millisecond', started_at, ifNull(finished_at, $__toTime_ms)), 0)
                           / 1000 AS duration_s
                FROM {STEPS}
                WHERE started_at IS NOT NULL
            )
            ORDER BY account_id, run_id, started_at, step_index, attempt"""),
            (8, 0, 16, 14), unit="s", stacked=True, horizontal=True, hidden_series=(TIMELINE_OFFSET,),
            description="Each step attempt from its start to its finish (seconds since the first step "
                        "started), coloured by its status: a retry is a bar of its own, the gap before it "
                        "the retry's wait; a delay step's bar is its wait."),
        Panel(3, "Step log", "table", sql_text(f"""
            SELECT step_index + 1 AS position, step_name AS step, step_type AS type, attempt, status,
                   started_at, finished_at, duration_ms, ifNull(input, '') AS input, ifNull(output, '') AS output,
                   ifNull(error_code, '') AS error_code, ifNull(error_class, '') AS error_class,
                   ifNull(error_message, '') AS error_message, ifNull(error_stack_trace, '') AS stack_trace,
                   ifNull(error_suggested_fix, '') AS suggested_fix,
                   multiIf(condition_result IS NULL, '', condition_result, 'true', 'false') AS condition_result,
                   ifNull(branch, '') AS branch, ifNull(action_kind, '') AS action_kind,
                   ifNull(target, '') AS target, scheduled_resume_at, resumed_at,
                   dateDiff('millisecond', scheduled_resume_at, resumed_at) AS resume_late_ms, step_id, run_id
            FROM {STEPS}
            ORDER BY run_id, step_index, attempt, started_at"""),
            (0, 14, 24, 12), paginate=True,
            description="Every attempt in workflow order: data received and produced, error details "
                        "(code, message, stack trace, suggested fix), a condition's result and branch, an "
                        "action's kind and target, a delay's scheduled and actual resume."),
        Panel(4, "Replays", "table", sql_text(f"""
            WITH {ORIGINALS} AS originals
            SELECT multiIf({RUN}, 'this run', replay_of IS NULL, 'original', 'replay') AS relation,
                   run_id, ifNull(replay_mode, '') AS replay_mode, status, workflow_version AS version,
                   started_at, finished_at, duration_ms, ifNull(error_code, '') AS error_code,
                   ifNull(error_message, '') AS error_message, account_id AS account, {WINDOW_COLUMNS}
            FROM {LINEAGE}
            WHERE (account_id, coalesce(replay_of, run_id)) IN originals
            ORDER BY coalesce(started_at, queued_at), run_id"""),
            (0, 26, 24, 8),
            links=(Link("run_id", "Run details", RUN_LINK),),
            description="The run's original and every replay of it (exact or modified), with their outcome."),
    ),
)
