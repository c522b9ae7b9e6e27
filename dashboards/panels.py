"""Every dashboard panel and alert rule, defined once.

The Grafana JSON (``dashboards.grafana``) and the HTML report (``dashboards.report``) are both
rendered from these definitions: the same SQL, with the ClickHouse plugin's macros and
template variables (see ``dashboards.macros`` for how they expand). The definitions live in
``dashboards.definitions``, one module per dashboard; this module gathers them.

Conventions every panel query follows, so any renderer can draw it:

* ``timeseries``: the first column is the time (``DateTime``), sorted ascending; string
  columns are series labels (the plugin turns such a "long" result into one series per label
  value); every numeric column is a series.
* ``heatmap``: the first column is the time, every other column one bucket of the y axis.
* ``barchart``: the first string column is the category axis, numeric columns are series.
* ``piechart``: a string column (slice) and a numeric column (size).
* ``stat``: numeric columns of the first row, one value each.
* ``table``: any columns.

Filters: the analytics dashboards (``ANALYTICS``) have the variables account, workflow, version,
type, trigger, site and card (multi-value, *All* by default); Workflow Runs adds status and a
typed-in run or contact id, Run details has account and run (``Dashboard.variables``). Run
panels filter on all seven; step panels filter on account, workflow and version directly and on
the others through the workflows whose runs match; queue panels on account only (queue depth is
kept per account); pipeline panels on account where the data has one. Each filter is wrapped in
``$__conditionalAll`` so *All* costs nothing.
"""

from __future__ import annotations

from typing import Any

from dashboards.definitions.alerts import (
    ALERT_GROUP,
    ALERT_INTERVAL,
    ALERT_RULES,
    CONTACT_POINT,
    GROUP_BY,
    WEBHOOK_URL_ENV,
)
from dashboards.definitions.failures import FAILURES, WORKFLOW_LINK
from dashboards.definitions.filters import ACCOUNT, PER_MINUTE, RUNS, run_filter, step_filter, values_of
from dashboards.definitions.model import AlertRule, Dashboard, Link, Panel, Variable
from dashboards.definitions.overview import OVERVIEW
from dashboards.definitions.pipeline import PIPELINE
from dashboards.definitions.queue import QUEUE
from dashboards.definitions.run_details import RUN_DETAILS
from dashboards.definitions.runs_list import RUN_LINK, RUN_LIST
from dashboards.definitions.variables import RUN_STATUSES, STANDARD, TRIGGERS, VARIABLES, WORKFLOW_TYPES
from dashboards.definitions.workflow import DURATION_BANDS, STEP_STATS, STEPS, WORKFLOW

__all__ = [
    "ACCOUNT", "ALERT_GROUP", "ALERT_INTERVAL", "ALERT_RULES", "ANALYTICS", "CONTACT_POINT", "DASHBOARDS",
    "DATASOURCE_TYPE", "DATASOURCE_UID", "DURATION_BANDS", "FAILURES", "FOLDER_TITLE", "FOLDER_UID",
    "GROUP_BY", "OVERVIEW", "PER_MINUTE", "PIPELINE", "QUEUE", "RUNS", "RUN_DETAILS", "RUN_LINK", "RUN_LIST",
    "RUN_STATUSES", "STANDARD", "STEPS", "STEP_STATS", "TRIGGERS", "VARIABLES", "WEBHOOK_URL_ENV", "WORKFLOW",
    "WORKFLOW_LINK", "WORKFLOW_TYPES", "AlertRule", "Dashboard", "Link", "Panel", "Variable", "all_panels",
    "dashboard", "panel_options", "run_filter", "step_filter", "values_of",
]

DATASOURCE_UID = "runlens-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
FOLDER_UID = "runlens"
FOLDER_TITLE = "runlens"

DASHBOARDS = (OVERVIEW, WORKFLOW, FAILURES, QUEUE, PIPELINE, RUN_LIST, RUN_DETAILS)
# The analytics dashboards, which the HTML report draws (Workflow Runs and Run details are
# interactive pages: a list of up to 1,000 runs, one run's log).
ANALYTICS = (OVERVIEW, WORKFLOW, FAILURES, QUEUE, PIPELINE)


def all_panels() -> list[tuple[Dashboard, Panel]]:
    return [(d, p) for d in DASHBOARDS for p in d.panels]


def dashboard(uid: str) -> Dashboard:
    for d in DASHBOARDS:
        if d.uid == uid:
            return d
    raise KeyError(uid)


def panel_options(panel: Panel) -> dict[str, Any]:
    """The renderer-independent display hints of a panel (for tests and the report)."""
    return {"stacked": panel.stacked, "bars": panel.bars, "horizontal": panel.horizontal}
