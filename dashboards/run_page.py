"""One run's details as HTML, for people without Grafana: ``runlens runs show RUN --html FILE``
and the "Last failures" section of ``runlens report`` draw the same thing with the same code.

A run's details: the overview (workflow, version, contact, times, status, trigger, replay
lineage), a step timeline (plotly: one horizontal bar per step attempt from its start to its
finish, a delay's scheduled and actual resume as markers) and the step log (every attempt with
its input, output, error, condition and action).

Everything that comes from events is hostile text: it is shown through ``esc`` (control and bidi
characters removed, then HTML-escaped), in the page and in the plotly figure alike (plotly draws
a subset of HTML in its labels, so escaped text stays literal). Anchors and element ids are made
here, never from event text.

    page = run_page(RunDetails(run, steps, original, replays))
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from dashboards import runs as rq
from dashboards.definitions.filters import run_filter

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

STATUS_COLORS = {"success": "#73bf69", "failed": "#f2495c", "skipped": "#b0b4bd", "running": "#8ab8ff",
                 "stopped": "#ff9830", "pending": "#cccccc"}
LAST_FAILURES = 10          # runs in the report's "Last failures" section
LONG_TEXT = 80              # longer values (or several lines) fold into <details>

# C0 and C1 controls (tab and newline kept), DEL and the Bidi_Control characters.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# --------------------------------------------------------------------------- text


def clean(value: Any) -> str:
    """Event text without control or bidi characters (not yet escaped)."""
    if value is None:
        return ""
    return _CONTROLS.sub("", value if isinstance(value, str) else str(value))


def esc(value: Any) -> str:
    """Event text for HTML (and plotly labels): cleaned, then escaped (quotes included)."""
    return html.escape(clean(value), quote=True)


def utc(value: Any) -> datetime | None:
    """A warehouse time as naive UTC (naive times from the warehouse are UTC)."""
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


def when(value: Any) -> str:
    moment = utc(value)
    if moment is None:
        return "" if value is None else clean(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def _axis_time(moment: datetime) -> str:
    """A time as plotly's date axis reads it (UTC, milliseconds)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def duration(ms: Any) -> str:
    if ms is None:
        return ""
    value = float(ms)
    if abs(value) < 1000:
        return f"{int(value)} ms"
    if abs(value) < 120_000:
        return f"{value / 1000:.2f} s"
    if abs(value) < 7_200_000:
        return f"{value / 60_000:.1f} min"
    return f"{value / 3_600_000:.1f} h"


# --------------------------------------------------------------------------- the data


@dataclass
class RunDetails:
    """One run as ``runs show`` reads it: the ``runs`` row, every step attempt (``run_steps``),
    the original it replays (a ``run_links`` row) and its replays (``run_replays`` rows)."""

    run: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    original: dict[str, Any] | None = None
    replays: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str]:
        return str(self.run.get("account_id") or ""), str(self.run["run_id"])

    def failing_step(self) -> dict[str, Any] | None:
        """The first step (by position) whose last attempt failed."""
        return rq.failing_step(rq.final_attempts(self.steps)) if self.steps else None


# --------------------------------------------------------------------------- the timeline


@dataclass
class Bar:
    """One step attempt on the timeline."""

    key: str            # the row of the y axis (unique per attempt)
    label: str          # its tick label (escaped)
    start: datetime
    end: datetime
    step: dict[str, Any]


def attempt_span(step: Mapping[str, Any], now: datetime | None = None) -> tuple[datetime, datetime] | None:
    """When an attempt ran: start to finish; a running attempt up to ``now``; from the finish and
    the duration when the start is unknown. None when it cannot be placed."""
    start, end = utc(step.get("started_at")), utc(step.get("finished_at"))
    ms = step.get("duration_ms")
    if start is None and end is not None and ms is not None:
        start = end - timedelta(milliseconds=float(ms))
    if start is None:
        start = end
    if start is None:
        return None
    if end is None:
        end = start + timedelta(milliseconds=float(ms)) if ms is not None else (utc(now) or start)
    return start, max(start, end)


def timeline_bars(steps: Sequence[Mapping[str, Any]], now: datetime | None = None) -> list[Bar]:
    """One bar per step attempt that can be placed in time, in the order given (step, attempt)."""
    bars = []
    for n, step in enumerate(steps):
        span = attempt_span(step, now)
        if span is None:
            continue
        label = f"{esc(step.get('step_index'))} {esc(step.get('step_name'))}"
        if (step.get("attempt") or 1) > 1:
            label += f" · try {esc(step.get('attempt'))}"
        bars.append(Bar(f"a{n}", label, span[0], span[1], dict(step)))
    return bars


def _hover(bar: Bar) -> str:
    s = bar.step
    lines = [f"<b>{esc(s.get('step_name'))}</b> ({esc(s.get('step_type'))}), attempt {esc(s.get('attempt'))}",
             f"{esc(s.get('status'))} · {esc(duration(s.get('duration_ms')))}",
             f"{when(bar.start)} → {when(bar.end)} UTC"]
    if s.get("error_code"):
        lines.append(f"{esc(s.get('error_code'))}: {esc(_short(s.get('error_message')))}")
    return "<br>".join(lines)


def _short(value: Any, limit: int = LONG_TEXT) -> str:
    text = " ".join(clean(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def timeline_figure(steps: Sequence[Mapping[str, Any]], now: datetime | None = None) -> go.Figure:
    """The step timeline: one horizontal bar per attempt (a trace per status; retries on rows of
    their own, hatched), and for delays the scheduled resume (open diamond) and the actual resume
    (filled diamond) joined by a line."""
    bars = timeline_bars(steps, now)
    fig = go.Figure()
    if not bars:
        fig.add_annotation(text="No step attempts to draw", showarrow=False, x=0.5, y=0.5, xref="paper",
                           yref="paper", font=dict(size=14, color="#888"))
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
        fig.update_layout(height=120, template="plotly_white", margin=dict(l=10, r=10, t=10, b=10))
        return fig
    first = min(b.start for b in bars)
    last = max(b.end for b in bars)
    span_ms = max((last - first) / timedelta(milliseconds=1), 1.0)
    min_width = span_ms * 0.004            # a 0 ms attempt still shows as a sliver
    by_status: dict[str, list[Bar]] = {}
    for bar in bars:
        by_status.setdefault(str(bar.step.get("status") or "unknown"), []).append(bar)
    for status, items in by_status.items():
        fig.add_trace(go.Bar(
            name=esc(status), orientation="h", y=[b.key for b in items],
            base=[_axis_time(b.start) for b in items],
            x=[max((b.end - b.start) / timedelta(milliseconds=1), min_width) for b in items],
            marker=dict(color=STATUS_COLORS.get(status, "#8e8e8e"),
                        pattern=dict(shape=["/" if (b.step.get("attempt") or 1) > 1 else "" for b in items])),
            hovertext=[_hover(b) for b in items], hoverinfo="text", meta="attempts"))
    delays = [b for b in bars if b.step.get("scheduled_resume_at") is not None]
    if delays:
        xs: list[str | None] = []
        ys: list[str | None] = []
        for b in delays:
            scheduled, resumed = utc(b.step.get("scheduled_resume_at")), utc(b.step.get("resumed_at"))
            if scheduled is not None and resumed is not None:
                xs += [_axis_time(scheduled), _axis_time(resumed), None]
                ys += [b.key, b.key, None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#ff9830", width=2, dash="dot"),
                                     hoverinfo="skip", showlegend=False))
        scheduled_at = [(b, utc(b.step.get("scheduled_resume_at"))) for b in delays]
        fig.add_trace(go.Scatter(
            name="scheduled resume", mode="markers", x=[_axis_time(t) for _, t in scheduled_at if t],
            y=[b.key for b, t in scheduled_at if t],
            marker=dict(symbol="diamond-open", size=11, color="#555", line=dict(width=2)),
            hovertext=[f"scheduled resume {when(t)} UTC" for _, t in scheduled_at if t], hoverinfo="text"))
        resumed_at = [(b, utc(b.step.get("resumed_at"))) for b in delays]
        fig.add_trace(go.Scatter(
            name="actual resume", mode="markers", x=[_axis_time(t) for _, t in resumed_at if t],
            y=[b.key for b, t in resumed_at if t], marker=dict(symbol="diamond", size=11, color="#ff9830"),
            hovertext=[f"resumed {when(t)} UTC" + (f" ({esc(duration(b.step.get('resume_late_ms')))} late)"
                                                   if (b.step.get("resume_late_ms") or 0) > 0 else "")
                       for b, t in resumed_at if t], hoverinfo="text"))
    keys = [b.key for b in bars]
    fig.update_layout(barmode="overlay", height=90 + 26 * len(bars), template="plotly_white",
                      margin=dict(l=10, r=20, t=30, b=40), font=dict(size=11), bargap=0.3,
                      legend=dict(orientation="h", x=0, y=1.0, yanchor="bottom", font=dict(size=10)))
    fig.update_xaxes(type="date", title_text="UTC")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=keys, tickvals=keys,
                     ticktext=[b.label for b in bars], autorange="reversed", automargin=True)
    return fig


def timeline_html(steps: Sequence[Mapping[str, Any]], div_id: str, now: datetime | None = None) -> str:
    """The timeline as a ``<div>`` (plotly.js itself is loaded once by the page)."""
    bars = timeline_bars(steps, now)
    plot = pio.to_html(timeline_figure(steps, now), full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True, "displayModeBar": False})
    missing = len(steps) - len(bars)
    note = ('<p class="note">One bar per step attempt, from its start to its finish (UTC); hatched bars are '
            "retries (attempt 2 and later); a delay's scheduled resume is the open diamond, its actual resume "
            "the filled one.</p>")
    if missing:
        note += f'<p class="note">{missing} attempt(s) without any time are not drawn.</p>'

    return f'<div class="timeline" data-timeline="{div_id}" data-bars="{len(bars)}">{plot}{note}</div>'


# --------------------------------------------------------------------------- overview and step log


def _fold(value: Any, summary: str = "") -> str:
    """A value in a cell: short text as is, long or multi-line text folded in <details>."""
    text = clean(value)
    if not text:
        return ""
    if len(text) <= LONG_TEXT and "\n" not in text and not summary:
        return f"<code>{html.escape(text)}</code>"
    head = summary or _short(text, 40)
    return f"<details><summary>{html.escape(head)}</summary><pre>{html.escape(text)}</pre></details>"


def _run_ref(run_id: Any, account: str, links: Mapping[tuple[str, str], str]) -> str:
    anchor = links.get((account, str(run_id)))
    return f'<a href="#{anchor}">{esc(run_id)}</a>' if anchor else f"<code>{esc(run_id)}</code>"


def overview_html(details: RunDetails, links: Mapping[tuple[str, str], str] | None = None) -> str:
    """The overview as a two-column table; ``links`` maps (account, run id) to an anchor in the
    same page (a replay or original shown there too)."""
    links = links or {}
    run = details.run
    account = details.key[0]
    version = f"v{esc(run.get('workflow_version'))}" + (f" ({esc(run['workflow_version_name'])})"
                                                       if run.get("workflow_version_name") else "")
    status = f'<span class="status s-{esc(run.get("status"))}">{esc(run.get("status"))}</span>'
    if run.get("error_code"):
        status += (f" <code>{esc(run['error_code'])}</code> [{esc(run.get('error_class'))}]: "
                   f"{esc(run.get('error_message'))}")
    site = run.get("site_name") or run.get("site_id")
    card = run.get("card_name") or run.get("card_id")
    rows: list[tuple[str, str]] = [
        ("account", esc(account)),
        ("workflow", f"{esc(run.get('workflow_name'))} (<code>{esc(run.get('workflow_id'))}</code>, "
                     f"{esc(run.get('workflow_type'))})"),
        ("version", version),
        ("status", status),
        ("trigger", esc(run.get("trigger"))),
        ("contact", esc(run.get("contact_id"))),
        ("site", f"{esc(site)} (<code>{esc(run.get('site_id'))}</code>)" if site else ""),
        ("card", f"{esc(card)} (<code>{esc(run.get('card_id'))}</code>)" if card else ""),
        ("queued", when(run.get("queued_at"))),
        ("started", when(run.get("started_at"))),
        ("finished", when(run.get("finished_at"))),
        ("duration", duration(run.get("duration_ms"))),
        ("queue wait", duration(run.get("queue_ms"))),
    ]
    original = details.original
    if original is not None:
        rows.append(("replay of", f"{_run_ref(original.get('run_id'), account, links)} "
                                  f"({esc(original.get('status'))}"
                                  + (f", <code>{esc(original['error_code'])}</code>" if original.get("error_code")
                                     else "")
                                  + f"), {esc(run.get('replay_mode'))} replay; outcome: "
                                  + esc(rq.verdict(original, run) if original.get("status") != "not found"
                                        else "original not found")))
    for replay in details.replays:
        rows.append(("replayed by", f"{_run_ref(replay.get('run_id'), account, links)} "
                                    f"({esc(replay.get('replay_mode'))} replay, "
                                    f"v{esc(replay.get('workflow_version'))}, "
                                    f"{esc(replay.get('status'))}"
                                    + (f", <code>{esc(replay['error_code'])}</code>" if replay.get("error_code")
                                       else "")
                                    + f", started {when(replay.get('started_at'))}); outcome: "
                                    + esc(rq.verdict(run, replay))))
    if original is None and not details.replays:
        rows.append(("replays", "none (an original run, never replayed)"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows if v)
    return f'<table class="kv">{body}</table>'


STEP_LOG_COLUMNS = ("#", "step", "type", "try", "status", "started", "finished", "duration", "input", "output",
                    "error code", "message", "stack trace", "suggested fix", "condition", "action", "delay")


def _delay(step: Mapping[str, Any]) -> str:
    if step.get("scheduled_resume_at") is None and step.get("resumed_at") is None:
        return ""
    late = step.get("resume_late_ms")
    resumed = when(step.get("resumed_at")) if step.get("resumed_at") else "not resumed"
    return (f"scheduled {when(step.get('scheduled_resume_at'))}<br>resumed {resumed}"
            + (f" ({esc(duration(late))} late)" if late and late > 0 else ""))


_NO_WRAP = {0, 2, 3, 4, 7, 10}    # #, type, try, status, duration, error code


def step_log_html(steps: Sequence[Mapping[str, Any]]) -> str:
    """Every step attempt, in the order given (step, attempt)."""
    head = "".join(f"<th>{c}</th>" for c in STEP_LOG_COLUMNS)
    rows = []
    for step in steps:
        status = str(step.get("status") or "")
        condition = ""
        if step.get("condition_result") is not None or step.get("branch"):
            result = step.get("condition_result")
            condition = (esc("" if result is None else str(result).lower())
                         + (f" → {esc(step.get('branch'))}" if step.get("branch") else ""))
        action = ""
        if step.get("action_kind") or step.get("target"):
            action = f"{esc(step.get('action_kind') or 'action')} → {esc(step.get('target'))}"
        cells = [
            esc(step.get("step_index")), esc(step.get("step_name")), esc(step.get("step_type")),
            esc(step.get("attempt")), f'<span class="status s-{esc(status)}">{esc(status)}</span>',
            when(step.get("started_at")), when(step.get("finished_at")), esc(duration(step.get("duration_ms"))),
            _fold(step.get("input")), _fold(step.get("output")),
            f"<code>{esc(step.get('error_code'))}</code>" if step.get("error_code") else "",
            esc(step.get("error_message")),
            _fold(step.get("error_stack_trace"), "stack trace") if step.get("error_stack_trace") else "",
            esc(step.get("error_suggested_fix")), condition, action, _delay(step),
        ]
        css = ' class="failed"' if status == "failed" else ""
        rows.append(f"<tr{css}>" + "".join(f'<td class="nw">{c}</td>' if n in _NO_WRAP else f"<td>{c}</td>"
                                           for n, c in enumerate(cells)) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(STEP_LOG_COLUMNS)}">No step recorded.</td></tr>')
    return (f'<div class="steplog"><table class="log"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def details_html(details: RunDetails, anchor: str, links: Mapping[tuple[str, str], str] | None = None,
                 now: datetime | None = None, heading: str = "h2") -> str:
    """One run's section: overview, timeline and step log. ``anchor`` (made by the caller, never
    event text) is the section's id; the timeline's div is ``{anchor}-timeline``."""
    run = details.run
    title = f"Run {esc(run.get('run_id'))} · {esc(run.get('workflow_name'))}"
    sub = "h3" if heading == "h2" else "h4"
    return (f'<section class="run" id="{anchor}"><{heading}>{title}</{heading}>'
            f"<{sub}>Overview</{sub}>{overview_html(details, links)}"
            f"<{sub}>Step timeline</{sub}>{timeline_html(details.steps, f'{anchor}-timeline', now)}"
            f"<{sub}>Step log</{sub}>{step_log_html(details.steps)}</section>")


# --------------------------------------------------------------------------- pages

CSS = """
section.run { background: #fff; border: 1px solid #dcdee3; border-radius: 3px; padding: 8px 14px 14px 14px;
              margin: 12px 0; }
section.run h2, section.run h3 { margin: 6px 0; }
section.run h3, section.run h4 { font-size: 14px; margin: 14px 0 4px 0; }
table.kv { border-collapse: collapse; font-size: 13px; }
table.kv th { text-align: left; padding: 2px 16px 2px 0; vertical-align: top; color: #555; font-weight: 600; }
table.kv td { padding: 2px 0; }
.steplog { overflow-x: auto; }
table.log, table.failures { border-collapse: collapse; font-size: 12px; width: 100%; }
table.log th, table.log td, table.failures th, table.failures td { border-bottom: 1px solid #e4e6ea;
    padding: 3px 6px; text-align: left; vertical-align: top; }
table.log th, table.failures th { background: #eef1f5; position: sticky; top: 0; }
table.log tr.failed td { background: #fff1f2; }
table.log td.nw { white-space: nowrap; }
table.log td { max-width: 360px; overflow-wrap: anywhere; }
table.log pre { white-space: pre-wrap; font-size: 11px; background: #f7f7f9; padding: 4px; margin: 2px 0;
                max-height: 260px; overflow: auto; }
.status { font-weight: 600; }
.s-success { color: #37872d; } .s-failed { color: #c4162a; } .s-running { color: #1f60c4; }
.s-stopped { color: #c46b00; } .s-skipped { color: #777; }
.note { font-size: 12px; color: #666; }
"""

PAGE_CSS = """
body { font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0;
       background: #f4f5f8; color: #1f2328; }
header { background: #111217; color: #fff; padding: 14px 24px; }
header h1 { margin: 0 0 4px 0; font-size: 20px; }
header p { margin: 0; font-size: 13px; color: #ccccdc; }
main { padding: 4px 24px 24px 24px; }
"""


def run_page(details: RunDetails, generated: datetime | None = None, now: datetime | None = None) -> str:
    """The run's details as one self-contained HTML page (plotly.js inlined: opens offline)."""
    generated = generated or datetime.now(UTC)
    run = details.run
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>runlens run {esc(run.get('run_id'))}</title>"
        f"<style>{PAGE_CSS}{CSS}</style><script type=\"text/javascript\">{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{esc(run.get('workflow_name'))}: run {esc(run.get('run_id'))}</h1>"
        f"<p>account {esc(details.key[0])} &middot; {esc(run.get('status'))} &middot; "
        f"{len(details.steps)} step attempts &middot; generated {generated:%Y-%m-%d %H:%M} UTC</p></header>"
        f"<main>{details_html(details, 'run', now=now or generated)}</main></body></html>\n")


def write_run_page(details: RunDetails, out_path: Path | str) -> Path:
    """Write ``run_page`` to ``out_path`` (parents created) and return the path."""
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(run_page(details), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- the report's "Last failures"


def last_failures_sql(limit: int = LAST_FAILURES) -> str:
    """The most recent failed runs of the report's window (failures by their finish time), with
    the dashboards' seven filters; expanded like a panel query (``macros.expand_bound``)."""
    return (f"SELECT {', '.join(rq.RUN_COLUMNS)} FROM runs\n"
            f"WHERE status = 'failed' AND $__timeFilter(finished_at)\n  AND {run_filter()}\n"
            f"ORDER BY finished_at DESC, account_id, run_id\nLIMIT {int(limit)}")


@dataclass
class FailureSection:
    """The report's "Last failures": the runs (newest failure first) with their details."""

    runs: list[RunDetails] = field(default_factory=list)
    sql: str = ""
    params: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    limit: int = LAST_FAILURES

    def anchors(self) -> dict[tuple[str, str], str]:
        """(account, run id) -> the id of its section (``failure-1`` ...)."""
        return {d.key: f"failure-{n}" for n, d in enumerate(self.runs, start=1)}


def _records(client: Client, sql: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
    # no parameters at all when none is used (see report.run_panel: client-side %-formatting)
    result = client.query(sql, parameters=dict(params)) if params else client.query(sql)
    return [dict(zip(result.column_names, row, strict=False)) for row in result.result_rows]


def collect_failures(client: Client, sql: str, params: Mapping[str, str], limit: int = LAST_FAILURES) -> FailureSection:
    """Run the expanded ``last_failures_sql`` and read each run's steps, replays and original
    (per account, bound like ``runs show``). A failing query is reported in the section."""
    section = FailureSection(sql=sql, params=dict(params), limit=limit)
    try:
        runs = _records(client, sql, params)
        by_account: dict[str, list[str]] = {}
        for run in runs:
            by_account.setdefault(str(run["account_id"]), []).append(str(run["run_id"]))
        steps: dict[tuple[str, str], list[dict[str, Any]]] = {}
        replays: dict[tuple[str, str], list[dict[str, Any]]] = {}
        originals: dict[tuple[str, str], dict[str, Any]] = {}
        for account, ids in by_account.items():
            q = rq.runs_steps(account, ids)
            for row in _records(client, q.sql, q.params):
                steps.setdefault((account, str(row.pop("run_id"))), []).append(row)
            q = rq.runs_replays(account, ids)
            for row in _records(client, q.sql, q.params):
                replays.setdefault((account, str(row["replay_of"])), []).append(row)
            wanted = sorted({str(r["replay_of"]) for r in runs if r["account_id"] == account and r["replay_of"]})
            if wanted:
                q = rq.run_links(account, wanted)
                for row in _records(client, q.sql, q.params):
                    originals[(account, str(row["run_id"]))] = row
    except Exception as exc:  # noqa: BLE001 - any failure is reported in the page
        text = str(exc)
        if "DB::Exception: " in text:
            text = text.split("DB::Exception: ", 1)[1]
        section.error = text.split("\n")[0][:500]
        return section
    for run in runs:
        key = (str(run["account_id"]), str(run["run_id"]))
        original = None
        if run["replay_of"]:
            original = originals.get((key[0], str(run["replay_of"])),
                                     {"run_id": run["replay_of"], "status": "not found"})
        section.runs.append(RunDetails(run, steps.get(key, []), original, replays.get(key, [])))
    return section


FAILURE_COLUMNS = ("account", "run", "workflow", "version", "started", "finished", "duration", "failing step",
                   "error")


def failures_html(section: FailureSection, now: datetime | None = None) -> str:
    """The "Last failures" section: the list (each row links to its run's section below), then
    every run's overview, timeline and step log."""
    intro = ("<p>The most recent failed runs of the window (by finish time) and the dashboards' filters, "
             f"newest first (at most {section.limit}); each links to its details below.</p>")
    query = (f"<details class=\"sql\"><summary>SQL</summary><pre>{html.escape(section.sql)}"
             + "".join(f"\n-- {{{html.escape(k)}:String}} = {html.escape(v)}"
                       for k, v in sorted(section.params.items()))
             + "</pre></details>")
    if section.error:
        return (f'<section id="last-failures"><h2>Last failures</h2>{intro}'
                f'<p class="error">query failed: {html.escape(section.error)}</p>{query}</section>')
    anchors = section.anchors()
    rows = []
    for details in section.runs:
        run = details.run
        anchor = anchors[details.key]
        failing = details.failing_step()
        message = (failing or {}).get("error_message") or run.get("error_message")
        code = (failing or {}).get("error_code") or run.get("error_code")
        cells = [esc(details.key[0]), f'<a href="#{anchor}">{esc(run.get("run_id"))}</a>',
                 esc(run.get("workflow_name")),
                 f"v{esc(run.get('workflow_version'))}" + (f" ({esc(run['workflow_version_name'])})"
                                                          if run.get("workflow_version_name") else ""),
                 when(run.get("started_at")), when(run.get("finished_at")), esc(duration(run.get("duration_ms"))),
                 (f"{esc(failing.get('step_index'))} {esc(failing.get('step_name'))}" if failing else ""),
                 (f"<code>{esc(code)}</code> " if code else "") + esc(_short(message, 160))]
        rows.append(f'<tr data-run="{anchor}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(FAILURE_COLUMNS)}">No failed run in the window.</td></tr>')
    head = "".join(f"<th>{c}</th>" for c in FAILURE_COLUMNS)
    runs = "".join(details_html(d, anchors[d.key], anchors, now, heading="h3") for d in section.runs)
    return (f'<section id="last-failures"><h2>Last failures</h2>{intro}'
            f'<table class="failures"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f"{query}{runs}</section>")


__all__ = ["CSS", "FailureSection", "RunDetails", "attempt_span", "collect_failures", "details_html", "esc",
           "failures_html", "last_failures_sql", "run_page", "step_log_html", "timeline_bars", "timeline_figure",
           "write_run_page"]
