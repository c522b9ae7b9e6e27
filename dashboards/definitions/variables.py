"""The dashboard variables: ``VARIABLES`` holds every one, each dashboard names its own
(``Dashboard.variables``; the analytics dashboards ``STANDARD``, multi-value, *All* by default)."""

from __future__ import annotations

from dashboards.definitions.filters import ACCOUNT, is_in, sql_text
from dashboards.definitions.model import Variable

WORKFLOW_TYPES = ("card", "site", "contact", "survey", "integration")
TRIGGERS = ("manual", "automatic", "api", "scheduled")

# The analytics dashboards' variables (model.STANDARD_VARIABLES), on Overview ... Pipeline health.
STANDARD = (
    Variable("account", "Account", sql_text("""
        SELECT DISTINCT account_id FROM run_stats_state
        WHERE $__timeFilter(bucket) ORDER BY account_id"""),
        description="Accounts (tenants) with finished runs in the time range."),
    Variable("workflow", "Workflow", sql_text(f"""
        SELECT workflow_id, concat(anyLast(workflow_name), ' (', workflow_id, ')') AS text
        FROM run_stats_state
        WHERE $__timeFilter(bucket) AND {ACCOUNT}
        GROUP BY workflow_id ORDER BY text"""),
        description="Workflows of the selected accounts (value: id, text: name)."),
    Variable("version", "Version", sql_text(f"""
        SELECT DISTINCT toString(workflow_version) FROM run_stats_state
        WHERE $__timeFilter(bucket) AND {ACCOUNT} AND {is_in('workflow_id', 'workflow')}
        ORDER BY toUInt32(toString(workflow_version))"""),
        description="Workflow versions of the selected workflows."),
    Variable("type", "Workflow type", options=WORKFLOW_TYPES),
    Variable("trigger", "Trigger", options=TRIGGERS),
    Variable("site", "Site", sql_text(f"""
        SELECT DISTINCT site_id FROM run_stats_state
        WHERE $__timeFilter(bucket) AND site_id != '' AND {ACCOUNT} ORDER BY site_id"""),
        description="Sites the selected accounts' runs belong to."),
    Variable("card", "Card", sql_text(f"""
        SELECT DISTINCT card_id FROM run_stats_state
        WHERE $__timeFilter(bucket) AND card_id != '' AND {ACCOUNT} ORDER BY card_id"""),
        description="Cards (forms, quizzes, surveys) the selected accounts' runs belong to."),
)

# The Workflow Runs and Run details dashboards' own variables (dashboards.definitions.runs_list,
# run_details): in VARIABLES (every variable a dashboard may have; each dashboard names its own,
# Dashboard.variables), on those two dashboards only.
RUN_STATUSES = ("success", "failed", "running", "pending", "stopped")

STATUS = Variable("status", "Status", options=RUN_STATUSES,
                  description="Run status (latest state): success, failed, running, pending, stopped.")
SEARCH = Variable("search", "Run or contact id", multi=False, include_all=False, textbox=True,
                  description="A run id or a contact id, typed in (empty: every run).")
RUN = Variable("run", "Run", multi=False, include_all=False, textbox=True,
               description="The run shown (its id, typed in or set by a link from Workflow Runs).")

VARIABLES = (*STANDARD, STATUS, SEARCH, RUN)

# Which variables each of the two dashboards has, in the order Grafana shows them.
RUN_LIST_VARIABLES = (*STANDARD, STATUS, SEARCH)
RUN_DETAILS_VARIABLES = (STANDARD[0], RUN)
# Variables whose value is typed in (Grafana textbox variables), not picked from options.
TEXT_VARIABLES = frozenset(v.name for v in VARIABLES if v.textbox)
