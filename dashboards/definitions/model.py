"""The definitions' data model: dashboard variables, panels, dashboards and alert rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# The variables of the analytics dashboards (Overview ... Pipeline health).
STANDARD_VARIABLES = ("account", "workflow", "version", "type", "trigger", "site", "card")


@dataclass(frozen=True)
class Variable:
    """A dashboard variable: a ClickHouse query (``sql``) or a fixed list (``options``)."""

    name: str
    label: str
    sql: str | None = None
    options: tuple[str, ...] = ()
    description: str = ""
    multi: bool = True
    include_all: bool = True
    textbox: bool = False              # typed in (Grafana textbox): one value, no options, empty = no filter

    @property
    def kind(self) -> str:
        return "textbox" if self.textbox else "query" if self.sql else "custom"


@dataclass(frozen=True)
class Link:
    """A link on a table column; ``${__data.fields.<column>}`` is the clicked row's value."""

    column: str
    title: str
    url: str


@dataclass(frozen=True)
class Panel:
    id: int
    title: str
    type: str                          # timeseries | stat | table | barchart | piechart | heatmap
    sql: str
    grid: tuple[int, int, int, int]    # x, y, w, h on Grafana's 24-column grid
    unit: str | None = None
    description: str = ""
    min_interval: str | None = None    # Grafana's panel "min interval": floor of $__interval
    stacked: bool = False              # timeseries/barchart: stack the series
    bars: bool = False                 # timeseries: draw bars instead of lines
    horizontal: bool = False           # barchart orientation
    links: tuple[Link, ...] = ()
    decimals: int | None = None
    hidden_series: tuple[str, ...] = ()  # barchart: columns drawn transparent, out of legend and tooltip
    paginate: bool = False             # table: Grafana pages the rows

    @property
    def time_series(self) -> bool:
        """Whether the plugin is asked for a time series (format 0) rather than a table."""
        return self.type in ("timeseries", "heatmap")


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    time_from: str = "now-6h"
    refresh: str = "1m"
    variables: tuple[str, ...] = STANDARD_VARIABLES   # names, of dashboards.panels.VARIABLES

    def panel(self, panel_id: int) -> Panel:
        return next(p for p in self.panels if p.id == panel_id)


@dataclass(frozen=True)
class AlertRule:
    """A Grafana-managed rule: query A (ClickHouse, over the last ``window_s`` seconds, one
    numeric column and string columns that become labels), condition B = threshold on A."""

    uid: str
    title: str
    sql: str
    window_s: int
    op: str                            # gt | lt
    threshold: float
    pending: str                       # Grafana's "for": how long it must hold before firing
    severity: str
    summary: str
    description: str
    runbook: str
    dashboard_uid: str
    panel_id: int
    no_data_state: Literal["OK", "NoData", "Alerting"] = "OK"
    exec_err_state: Literal["OK", "Error", "Alerting"] = "Error"
    labels: dict[str, str] = field(default_factory=dict)
