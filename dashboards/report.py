"""The dashboards as one self-contained HTML page, for people without Grafana.

Every panel of every dashboard in ``dashboards.panels`` is run with the same SQL Grafana runs
(macros expanded by ``dashboards.macros`` exactly as the ClickHouse plugin expands them) and
drawn with plotly. The variable values (``--account`` ...) are never part of the SQL text: they
travel as server-side query parameters (``{var_account:String}``, ``macros.expand_bound``)
holding the text Grafana would have put in the query, which the panel's SQL decodes. plotly.js
is inlined once, so the file opens offline.

After the dashboards, "Workflows needing attention" (``dashboards.attention_report``: the
workflows ranked by ``dashboards.attention``'s score, with reasons and drill-ins), then "Last
failures" (``dashboards.run_page``): the most recent failed runs of
the window under the same variable values, each linking to its own details (overview, step
timeline, step log) further down the page, drawn by the code of ``runlens runs show --html``.

    write_report(client, Path("report.html"), since, until, {"account": "acme"})
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dashboards import attention_report, run_page
from dashboards import panels as P
from dashboards.macros import ALL, MacroError, TimeRange, Variable, expand_bound
from schemas.times import parse_duration

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

# --------------------------------------------------------------------------- query interval

NICE_INTERVALS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
                  43200, 86400, 604800, 2592000)
MAX_POINTS = 300


def parse_interval(text: str) -> float:
    """Grafana's interval notation (``10s``, ``5m``, ``1h``, ``1d``, ``500ms``) in seconds
    (``schemas.times.parse_duration``)."""
    try:
        return parse_duration(text).total_seconds()
    except ValueError:
        raise ValueError(f"not an interval: {text!r}") from None


def query_interval(panel: P.Panel, since: datetime, until: datetime, max_points: int = MAX_POINTS) -> float:
    """The ``$__interval`` for a panel, the way Grafana derives it: the time range divided by
    the number of points the panel can show, rounded up to a round interval, and never below
    the panel's min interval."""
    raw = max((until - since).total_seconds() / max_points, 1)
    nice = next((n for n in NICE_INTERVALS if n >= raw), NICE_INTERVALS[-1])
    floor = parse_interval(panel.min_interval) if panel.min_interval else 0
    return max(nice, floor)


def variable_specs() -> dict[str, Variable]:
    """What the expander needs to know about the dashboards' variables (All of a fixed list)."""
    return {v.name: Variable(v.name, all_values=tuple(v.options)) for v in P.VARIABLES}


def variable_values(selected: Mapping[str, Any] | None) -> dict[str, str | list[str]]:
    """Every dashboard variable's value: the selection, else All. ``None`` or empty means All."""
    values: dict[str, str | list[str]] = {}
    selected = dict(selected or {})
    unknown = set(selected) - {v.name for v in P.VARIABLES}
    if unknown:
        raise ValueError(f"unknown dashboard variable(s): {', '.join(sorted(unknown))}")
    for v in P.VARIABLES:
        value = selected.get(v.name)
        if value in (None, "", [], ALL, [ALL]):
            values[v.name] = [ALL]
        elif isinstance(value, str):
            values[v.name] = [part.strip() for part in value.split(",") if part.strip()]
        else:
            values[v.name] = [str(part) for part in value]
    return values


def panel_sql(panel: P.Panel, since: datetime, until: datetime,
              values: Mapping[str, str | list[str]]) -> tuple[str, dict[str, str]]:
    """The SQL ClickHouse receives for ``panel`` and its server-side parameters (the variable
    values; never in the SQL text)."""
    time = TimeRange(since, until, query_interval(panel, since, until))
    return expand_bound(panel.sql, time, values, variable_specs())


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    columns: list[str] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    rows: list[tuple] = field(default_factory=list)
    sql: str = ""
    error: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    def kinds(self) -> list[str]:
        return [column_kind(t) for t in self.types]


_WRAPPERS = re.compile(r"^(Nullable|LowCardinality)\((.*)\)$")


def base_type(ch_type: str) -> str:
    """The value type under Nullable / LowCardinality / SimpleAggregateFunction wrappers."""
    t = ch_type.strip()
    while True:
        match = _WRAPPERS.match(t)
        if match:
            t = match.group(2)
            continue
        if t.startswith("SimpleAggregateFunction("):
            t = t[len("SimpleAggregateFunction("):-1].split(",", 1)[1].strip()
            continue
        return t


def column_kind(ch_type: str) -> str:
    """time | number | string | other, as Grafana's data frames see a ClickHouse column."""
    t = base_type(ch_type)
    if t.startswith(("DateTime", "Date")):
        return "time"
    if re.match(r"^(U?Int\d+|Float\d+|Decimal|Bool)", t):
        return "number"
    if t.startswith(("String", "FixedString", "Enum", "UUID", "IPv")):
        return "string"
    return "other"


def run_panel(client: Client, panel: P.Panel, since: datetime, until: datetime,
              values: Mapping[str, str | list[str]]) -> Result:
    try:
        sql, params = panel_sql(panel, since, until, values)
    except MacroError as exc:
        return Result(error=f"cannot expand the query: {exc}")
    try:
        # no parameters at all when none is used: clickhouse-connect would otherwise format the
        # SQL client-side (Python %-formatting), which the panels' '%' literals do not survive
        result = client.query(sql, parameters=params) if params else client.query(sql)
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the page
        text = str(exc)
        if "DB::Exception: " in text:
            text = text.split("DB::Exception: ", 1)[1]
        return Result(sql=sql, params=params, error=text.split("\n")[0][:500])
    return Result(columns=list(result.column_names), types=[t.name for t in result.column_types],
                  rows=[tuple(r) for r in result.result_rows], sql=sql, params=params)


# --------------------------------------------------------------------------- figures

ROW_PX = 34          # one Grafana grid row, roughly
COLORS = ("#73bf69", "#f2495c", "#8ab8ff", "#ff9830", "#b877d9", "#fade2a", "#5794f2", "#96d98d",
          "#ff7383", "#ffb357", "#ca95e5", "#ffee52")
STATUS_COLORS = {"success": "#73bf69", "failed": "#f2495c", "stopped": "#ff9830", "in_progress": "#8ab8ff"}


def unit_label(unit: str | None) -> str:
    if not unit or unit in ("short", "none"):
        return ""
    if unit == "percent":
        return "%"
    if unit.startswith("suffix:"):
        return unit.split(":", 1)[1].strip()
    return unit


def _scaled(value: float | None, unit: str | None) -> tuple[float | None, str]:
    """A stat value in a readable unit (Grafana scales durations the same way)."""
    if unit == "ms" and value is not None:
        for size, name in ((3_600_000, "h"), (60_000, "min"), (1000, "s")):
            if abs(value) >= size:
                return value / size, name
    return value, unit_label(unit)


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)


def _layout(fig: go.Figure, panel: P.Panel, **extra: Any) -> go.Figure:
    height = panel.grid[3] * ROW_PX - 30
    settings = dict(height=height, margin=dict(l=50, r=20, t=10, b=30), template="plotly_white",
                    legend=dict(orientation="h", y=-0.15, font=dict(size=10)), font=dict(size=11),
                    colorway=list(COLORS))
    settings.update(extra)
    fig.update_layout(**settings)
    return fig


def _message(panel: P.Panel, text: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font=dict(size=14, color="#888"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, panel)


def _series_color(name: str, index: int) -> str:
    return STATUS_COLORS.get(name, COLORS[index % len(COLORS)])


def _time_series(panel: P.Panel, res: Result) -> go.Figure:
    kinds = res.kinds()
    labels = [i for i, k in enumerate(kinds[1:], 1) if k == "string"]
    numbers = [i for i, k in enumerate(kinds[1:], 1) if k == "number"]
    series: dict[tuple[str, tuple], tuple[list, list]] = {}
    for row in res.rows:
        key_labels = tuple(str(row[i]) for i in labels)
        for i in numbers:
            xs, ys = series.setdefault((res.columns[i], key_labels), ([], []))
            xs.append(row[0])
            ys.append(_number(row[i]))
    fig = go.Figure()
    for n, ((column, key_labels), (xs, ys)) in enumerate(series.items()):
        name = " ".join(key_labels) if key_labels and len(numbers) == 1 else " ".join((column, *key_labels))
        color = _series_color(column if not key_labels else name, n)
        if panel.bars:
            fig.add_trace(go.Bar(x=xs, y=ys, name=name, marker_color=color))
        else:
            fig.add_trace(go.Scatter(x=xs, y=ys, name=name, mode="lines", line=dict(width=1.5, color=color),
                                     stackgroup="one" if panel.stacked else None))
    _layout(fig, panel, barmode="stack" if panel.stacked else "group", bargap=0.1)
    fig.update_yaxes(title_text=unit_label(panel.unit), rangemode="tozero")
    return fig


def _heatmap(panel: P.Panel, res: Result) -> go.Figure:
    buckets = res.columns[1:]
    z = [[_number(row[i + 1]) for row in res.rows] for i in range(len(buckets))]
    fig = go.Figure(go.Heatmap(x=[_cell(row[0]).removesuffix(" 00:00:00") for row in res.rows], y=buckets, z=z,
                               colorscale="Oranges", xgap=1, ygap=1,
                               colorbar=dict(title=unit_label(panel.unit) or "runs")))
    _layout(fig, panel)
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category")
    return fig


def _barchart(panel: P.Panel, res: Result) -> go.Figure:
    kinds = res.kinds()
    category = next((i for i, k in enumerate(kinds) if k in ("string", "time")), 0)
    categories = [_cell(row[category]) for row in res.rows]
    fig = go.Figure()
    numbers = [i for i, k in enumerate(kinds) if k == "number" and i != category]
    for n, i in enumerate(numbers):
        values = [_number(row[i]) for row in res.rows]
        color = _series_color(res.columns[i], n)
        if panel.horizontal:
            fig.add_trace(go.Bar(y=categories[::-1], x=values[::-1], name=res.columns[i], orientation="h",
                                 marker_color=color))
        else:
            fig.add_trace(go.Bar(x=categories, y=values, name=res.columns[i], marker_color=color))
    _layout(fig, panel, barmode="stack" if panel.stacked else "group", showlegend=len(numbers) > 1)
    value_axis, category_axis = ((fig.update_xaxes, fig.update_yaxes) if panel.horizontal
                                 else (fig.update_yaxes, fig.update_xaxes))
    value_axis(title_text=unit_label(panel.unit))
    category_axis(type="category")
    if panel.horizontal:
        fig.update_layout(margin=dict(l=260, r=20, t=10, b=30))
    return fig


def _piechart(panel: P.Panel, res: Result) -> go.Figure:
    kinds = res.kinds()
    label = kinds.index("string") if "string" in kinds else 0
    value = next(i for i, k in enumerate(kinds) if k == "number")
    fig = go.Figure(go.Pie(labels=[_cell(r[label]) for r in res.rows], values=[_number(r[value]) for r in res.rows],
                           hole=0.45, sort=False, marker=dict(colors=list(COLORS))))
    return _layout(fig, panel, legend=dict(orientation="v"))


def _stat(panel: P.Panel, res: Result) -> go.Figure:
    kinds = res.kinds()
    numbers = [i for i, k in enumerate(kinds) if k == "number"]
    row = res.rows[0]
    fig = go.Figure()
    for n, i in enumerate(numbers):
        value, suffix = _scaled(_number(row[i]), panel.unit)
        fig.add_trace(go.Indicator(
            mode="number", value=value if value is not None else 0,
            number=dict(suffix=(" " + suffix if suffix and suffix != "%" else suffix),
                        valueformat=f",.{panel.decimals}f" if panel.decimals is not None else ",.3~f",
                        font=dict(size=40)),
            domain=dict(x=[n / len(numbers), (n + 1) / len(numbers)], y=[0, 1])))
    return _layout(fig, panel, margin=dict(l=10, r=10, t=10, b=10))


def _table(panel: P.Panel, res: Result) -> go.Figure:
    columns: list[Sequence[Any]] = list(zip(*res.rows, strict=False)) if res.rows else [[] for _ in res.columns]
    fig = go.Figure(go.Table(
        header=dict(values=[f"<b>{html.escape(c)}</b>" for c in res.columns], fill_color="#eef1f5", align="left",
                    font=dict(size=11)),
        cells=dict(values=[[_cell(v) for v in col] for col in columns], align="left", font=dict(size=10),
                   height=22)))
    return _layout(fig, panel, margin=dict(l=5, r=5, t=5, b=5))


RENDERERS = {"timeseries": _time_series, "heatmap": _heatmap, "barchart": _barchart, "piechart": _piechart,
             "stat": _stat, "table": _table}


def figure(panel: P.Panel, res: Result) -> go.Figure:
    if res.error:
        return _message(panel, "query failed: " + res.error[:120])
    if not res.rows:
        return _message(panel, "No data")
    return RENDERERS[panel.type](panel, res)


# --------------------------------------------------------------------------- page

CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0;
       background: #f4f5f8; color: #1f2328; }
header { background: #111217; color: #fff; padding: 14px 24px; }
header h1 { margin: 0 0 4px 0; font-size: 20px; }
header p { margin: 0; font-size: 13px; color: #ccccdc; }
nav { padding: 8px 24px; background: #fff; border-bottom: 1px solid #ddd; font-size: 13px; }
nav a { margin-right: 16px; color: #3d71d9; text-decoration: none; }
section { padding: 8px 24px 24px 24px; }
section > h2 { font-size: 17px; margin: 16px 0 2px 0; }
section > p { margin: 0 0 10px 0; font-size: 13px; color: #555; }
.grid { display: grid; grid-template-columns: repeat(24, minmax(0, 1fr)); gap: 8px; }
.panel { background: #fff; border: 1px solid #dcdee3; border-radius: 3px; padding: 6px 8px; min-width: 0; }
.panel h3 { font-size: 13px; margin: 0 0 4px 0; font-weight: 600; }
.panel .desc { font-size: 11px; color: #666; margin: 0 0 2px 0; }
.panel details { font-size: 11px; color: #666; }
.panel pre { white-space: pre-wrap; font-size: 10px; background: #f7f7f9; padding: 6px; max-height: 200px;
             overflow: auto; }
.error { color: #c4162a; }
"""


@dataclass
class RenderedPanel:
    dashboard: P.Dashboard
    panel: P.Panel
    result: Result


def _panel_html(item: RenderedPanel) -> str:
    panel, res = item.panel, item.result
    x, y, w, h = panel.grid
    div_id = f"{item.dashboard.uid}-panel-{panel.id}"
    plot = pio.to_html(figure(panel, res), full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True, "displayModeBar": False})
    desc = f'<p class="desc">{html.escape(panel.description)}</p>' if panel.description else ""
    error = f'<p class="error">query failed: {html.escape(res.error)}</p>' if res.error else ""
    return (f'<div class="panel" data-panel="{div_id}" data-type="{panel.type}" '
            f'data-rows="{len(res.rows)}" style="grid-column: {x + 1} / span {w}; grid-row: {y + 1} / span {h};">'
            f"<h3>{html.escape(panel.title)}</h3>{desc}{error}{plot}"
            f"<details><summary>SQL</summary><pre>{html.escape(_with_params(res))}</pre></details></div>")


def _with_params(res: Result) -> str:
    """The SQL and, after it, the parameters it was sent with (as ClickHouse received them)."""
    lines = [f"-- {{{name}:String}} = {value}" for name, value in sorted(res.params.items())]
    return res.sql + ("\n\n" + "\n".join(lines) if lines else "")


def _describe_values(values: Mapping[str, Sequence[str] | str]) -> str:
    parts = []
    for v in P.VARIABLES:
        value = values.get(v.name, [ALL])
        shown = "All" if value in ([ALL], ALL) else ", ".join([value] if isinstance(value, str) else value)
        parts.append(f"{v.label}: {shown}")
    return " &middot; ".join(html.escape(p) for p in parts)


def render_html(items: list[RenderedPanel], since: datetime, until: datetime,
                values: Mapping[str, Sequence[str] | str], generated: datetime | None = None,
                failures: run_page.FailureSection | None = None,
                attention: attention_report.AttentionSection | None = None) -> str:
    generated = generated or datetime.now(UTC)
    by_dashboard: dict[str, list[RenderedPanel]] = {}
    for item in items:
        by_dashboard.setdefault(item.dashboard.uid, []).append(item)
    sections, nav = [], []
    for uid, panels in by_dashboard.items():
        d = panels[0].dashboard
        name = d.title.split(" / ", 1)[-1]
        nav.append(f'<a href="#{uid}">{html.escape(name)}</a>')
        sections.append(f'<section id="{uid}"><h2>{html.escape(name)}</h2><p>{html.escape(d.description)}</p>'
                        f'<div class="grid">{"".join(_panel_html(p) for p in panels)}</div></section>')
    if attention is not None:
        nav.append(f'<a href="#{attention_report.SECTION_ID}">{attention_report.TITLE}</a>')
        sections.append(attention_report.section_html(attention))
    if failures is not None:
        nav.append('<a href="#last-failures">Last failures</a>')
        sections.append(run_page.failures_html(failures, now=until))
    failed = sum(1 for i in items if i.result.error)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>runlens report {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC</title>"
        f"<style>{CSS}{run_page.CSS}{attention_report.CSS}</style>"
        f"<script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
        f"<header><h1>runlens report</h1><p>{since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC &middot; "
        f"{_describe_values(values)} &middot; {len(items)} panels"
        f"{f' ({failed} failed)' if failed else ''} &middot; generated {generated:%Y-%m-%d %H:%M} UTC</p></header>"
        f"<nav>{''.join(nav)}</nav>{''.join(sections)}</body></html>\n")


def _utc(moment: datetime | date) -> datetime:
    if not isinstance(moment, datetime):
        moment = datetime(moment.year, moment.month, moment.day)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def collect(client: Client, since: datetime, until: datetime, variables: Mapping[str, Any] | None = None,
            dashboards: Sequence[P.Dashboard] = P.ANALYTICS) -> list[RenderedPanel]:
    values = variable_values(variables)
    return [RenderedPanel(d, p, run_panel(client, p, since, until, values)) for d in dashboards for p in d.panels]


def failures(client: Client, since: datetime, until: datetime, variables: Mapping[str, Any] | None = None,
             limit: int = run_page.LAST_FAILURES) -> run_page.FailureSection:
    """The "Last failures" section: the last ``limit`` failed runs of ``[since, until]`` under
    these variable values (bound like the panels' values), with their details."""
    try:
        sql, params = expand_bound(run_page.last_failures_sql(limit), TimeRange(since, until),
                                   variable_values(variables), variable_specs())
    except MacroError as exc:
        return run_page.FailureSection(error=f"cannot expand the query: {exc}", limit=limit)
    return run_page.collect_failures(client, sql, params, limit)


def attention(client: Client, since: datetime, until: datetime,
              variables: Mapping[str, Any] | None = None) -> attention_report.AttentionSection:
    """The "Workflows needing attention" section for ``[since, until]`` under these variable values
    (account and workflow; bound like the panels' values)."""
    try:
        sql, params = expand_bound(attention_report.facts_sql(), TimeRange(since, until),
                                   variable_values(variables), variable_specs())
    except MacroError as exc:
        return attention_report.AttentionSection(error=f"cannot expand the query: {exc}")
    return attention_report.collect(client, sql, params, since, until)


def write_report(client: Client, out_path: Path | str, since: datetime, until: datetime | None = None,
                 variables: Mapping[str, Any] | None = None,
                 dashboards: Sequence[P.Dashboard] = P.ANALYTICS, last_failures: int = 0,
                 needing_attention: bool = False) -> Path:
    """Run every panel against ``client`` for ``[since, until]`` (UTC; naive times are UTC) with
    these variable values (name -> value or list; missing = All) and write one HTML file.
    With ``last_failures`` > 0, the page ends with the "Last failures" section (at most that
    many runs; ``runlens report`` shows ``run_page.LAST_FAILURES``); with ``needing_attention``
    the "Workflows needing attention" section comes before it (``runlens report`` shows it).
    Returns the path written.
    Panels whose query fails show the error instead of a chart; so does the section."""
    since = _utc(since)
    until = _utc(until) if until is not None else datetime.now(UTC)
    if until <= since:
        raise ValueError("the report's time range is empty (until <= since)")
    items = collect(client, since, until, variables, dashboards)
    last = failures(client, since, until, variables, last_failures) if last_failures > 0 else None
    needing = attention(client, since, until, variables) if needing_attention else None
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(items, since, until, variable_values(variables), failures=last, attention=needing),
                   encoding="utf-8")
    return out


__all__ = ["write_report", "collect", "failures", "attention", "render_html", "panel_sql", "query_interval",
           "variable_values", "column_kind", "Result"]
