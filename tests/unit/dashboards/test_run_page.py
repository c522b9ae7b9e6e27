"""The run-details page (``runs show --html``) and the report's "Last failures" section, from
hand-made runs: one timeline bar per step attempt (retries apart), delays' resumes drawn, every
piece of event text escaped, each failure linked to its own section, queries bound per account."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dashboards import run_page as rp
from dashboards import runs as rq
from dashboards.macros import TimeRange, expand_bound
from dashboards.report import variable_specs, variable_values

T0 = datetime(2026, 11, 16, 2, 0, 0, tzinfo=UTC)
EVIL = '<script>alert(1)</script><a href="javascript:x">\u202eevil\x1b[31m & "q"'


def _step(index: int, name: str, kind: str, attempt: int, status: str, start_s: float, ms: int | None,
          **extra: Any) -> dict[str, Any]:
    started = T0 + timedelta(seconds=start_s)
    row = {c: None for c in (*rq.STEP_COLUMNS, "resume_late_ms")}
    row.update(step_index=index, step_id=f"s{index}", step_name=name, step_type=kind, attempt=attempt, status=status,
               started_at=started, finished_at=started + timedelta(milliseconds=ms) if ms is not None else None,
               duration_ms=ms)
    row.update(extra)
    return row


def _steps() -> list[dict[str, Any]]:
    scheduled = T0 + timedelta(seconds=40)
    return [
        _step(0, "Form submitted", "trigger", 1, "success", 0, 5),
        _step(1, "Send welcome email", "action", 1, "failed", 1, 800, error_code="EMAIL_UNAVAILABLE",
              error_class="external_service", error_message="SMTP 421 from mx-7",
              error_stack_trace="at send()\n  at run()", error_suggested_fix="Retry later", input='{"to":"a@b.c"}',
              action_kind="email", target="contact c-1"),
        _step(1, "Send welcome email", "action", 2, "failed", 5, 700, error_code="EMAIL_UNAVAILABLE",
              error_message="SMTP 421 from mx-8"),
        _step(1, "Send welcome email", "action", 3, "success", 12, 650, action_kind="email", target="contact c-1",
              output='{"message_id":"m1"}'),
        _step(2, "Wait 30 s", "delay", 1, "success", 13, 30_000, scheduled_resume_at=scheduled,
              resumed_at=scheduled + timedelta(milliseconds=2500), resume_late_ms=2500),
        _step(3, "Is customer?", "condition", 1, "success", 43, 3, condition_result=True, branch="yes"),
        _step(4, EVIL, "action", 1, "failed", 44, 120, error_code="CRM_SYNC", error_message=EVIL,
              error_stack_trace=EVIL, error_suggested_fix=EVIL, input=EVIL, output=None),
    ]


def _run(run_id: str = "run_1", account: str = "acme", **extra: Any) -> dict[str, Any]:
    run = {c: None for c in rq.RUN_COLUMNS}
    run.update(account_id=account, run_id=run_id, workflow_id="wf-welcome", workflow_name="Welcome email",
               workflow_version=36, workflow_version_name="Spring copy", workflow_type="contact", status="failed",
               trigger="automatic", contact_id="c-1", queued_at=T0 - timedelta(seconds=2), started_at=T0,
               finished_at=T0 + timedelta(seconds=44.12), queue_ms=2000, duration_ms=44_120,
               error_code="CRM_SYNC", error_class="external_service", error_message="sync failed")
    run.update(extra)
    return run


# --------------------------------------------------------------------------- the timeline


def test_one_bar_per_attempt_and_retries_on_rows_of_their_own():
    steps = _steps()
    fig = rp.timeline_figure(steps)
    bars = [t for t in fig.data if t.type == "bar"]
    assert sum(len(t.y) for t in bars) == len(steps) == 7
    keys = [k for t in bars for k in t.y]
    assert len(set(keys)) == len(keys)                      # every attempt its own row
    labels = dict(zip(fig.layout.yaxis.tickvals, fig.layout.yaxis.ticktext, strict=True))
    retry_labels = sorted(labels[k] for k in keys if "try" in labels[k])
    assert retry_labels == ["1 Send welcome email · try 2", "1 Send welcome email · try 3"]
    by_status = {t.name: len(t.y) for t in bars}
    assert by_status == {"success": 4, "failed": 3}
    # retries are hatched; each bar starts at its attempt's start and is as long as it lasted
    failed = next(t for t in bars if t.name == "failed")
    assert list(failed.marker.pattern.shape) == ["", "/", ""]
    assert failed.base[1] == "2026-11-16 02:00:05.000" and failed.x[1] == 700


def test_delays_show_the_scheduled_and_the_actual_resume():
    fig = rp.timeline_figure(_steps())
    scheduled = next(t for t in fig.data if t.name == "scheduled resume")
    resumed = next(t for t in fig.data if t.name == "actual resume")
    assert list(scheduled.x) == ["2026-11-16 02:00:40.000"] and list(resumed.x) == ["2026-11-16 02:00:42.500"]
    assert "2.50 s late" in resumed.hovertext[0]


def test_running_and_timeless_attempts():
    steps = [_step(0, "a", "action", 1, "running", 0, None), _step(1, "b", "action", 1, "success", 0, 10)]
    steps.append({**steps[1], "step_index": 2, "started_at": None, "finished_at": None, "duration_ms": None})
    bars = rp.timeline_bars(steps, now=T0 + timedelta(seconds=5))
    assert [(b.end - b.start).total_seconds() for b in bars] == [5.0, 0.01]
    page = rp.timeline_html(steps, "t", now=T0 + timedelta(seconds=5))
    assert 'data-bars="2"' in page and "1 attempt(s) without any time are not drawn" in page
    assert rp.timeline_figure([]).data == ()


# --------------------------------------------------------------------------- the page


def test_the_page_shows_overview_steps_and_lineage_with_every_event_text_escaped():
    original = {"run_id": "run_0", "status": "failed", "error_code": "CRM_SYNC", "replay_of": None}
    replay = {"run_id": "run_2", "replay_of": "run_1", "replay_mode": "exact", "status": "success",
              "workflow_version": 37, "started_at": T0 + timedelta(hours=1), "finished_at": None, "error_code": None}
    run = _run(replay_of="run_0", replay_mode="modified", contact_id=EVIL)
    page = rp.run_page(rp.RunDetails(run, _steps(), original, [replay]))
    for text in ("Welcome email", "wf-welcome", "v36 (Spring copy)", "2026-11-16 02:00:00.000",
                 "2026-11-16 02:00:44.120", "44.12 s", "automatic", "EMAIL_UNAVAILABLE", "SMTP 421 from mx-7",
                 "Retry later", "email → contact c-1", "true → yes", "2.50 s late", "modified replay",
                 "outcome: still failing (same error)", "outcome: fixed", "run_2", "Form submitted"):
        assert text in page, text
    assert page.count("<tr") >= 7 + 1
    # nothing from the events is markup, a script, a link or a bidi override
    assert "<script>alert" not in page and 'href="javascript' not in page and "\u202e" not in page
    assert "\x1b" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # the figure's data carries the escaped text only
    figures = re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', page, re.S)
    assert figures and "<script" not in json.loads(figures[0]).__repr__()
    assert page.count("<script") == 2     # plotly.js and the figure, nothing else


def test_write_run_page(tmp_path):
    path = rp.write_run_page(rp.RunDetails(_run(), _steps()), tmp_path / "sub" / "run.html")
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="run-timeline"' in text and "<script src=" not in text


# --------------------------------------------------------------------------- the report's section


def test_the_failures_query_binds_every_value():
    values = variable_values({"account": EVIL, "workflow": "wf-welcome"})
    time = TimeRange(T0, T0 + timedelta(hours=6))
    sql, params = expand_bound(rp.last_failures_sql(5), time, values, variable_specs())
    assert "script" not in sql and "wf-welcome" not in sql
    assert "status = 'failed'" in sql and sql.rstrip().endswith("LIMIT 5")
    assert set(params) == {"var_account", "var_workflow"}


@dataclass
class _Result:
    column_names: tuple[str, ...]
    result_rows: list[tuple]


class _FakeClient:
    """Answers the section's queries from hand-made rows and records what was asked."""

    def __init__(self, runs: list[dict[str, Any]], steps: dict[tuple[str, str], list[dict[str, Any]]]):
        self.runs, self.steps, self.asked = runs, steps, []

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> _Result:
        params = parameters or {}
        self.asked.append((sql, params))
        if "FROM steps" in sql:
            cols = ("run_id", *rq.STEP_COLUMNS, "resume_late_ms")
            rows = [(rid, *(s[c] for c in cols[1:])) for (acc, rid), ss in self.steps.items()
                    if acc == params["account"] and rid in params["run_ids"] for s in ss]
            return _Result(cols, rows)
        if "replay_of IN" in sql:
            return _Result(rq.REPLAY_LINK_COLUMNS, [])
        if "run_id IN" in sql:
            return _Result(rq.REPLAY_LINK_COLUMNS, [])
        return _Result(rq.RUN_COLUMNS, [tuple(r[c] for c in rq.RUN_COLUMNS) for r in self.runs])


def test_last_failures_link_each_run_to_its_own_details():
    runs = [_run("run_1", "acme"), _run("run_1", "globex", workflow_name="Lead sync")]
    steps = {("acme", "run_1"): _steps(), ("globex", "run_1"): _steps()[:2]}
    client = _FakeClient(runs, steps)
    section = rp.collect_failures(client, "SELECT ...", {})
    assert section.error is None and [len(d.steps) for d in section.runs] == [7, 2]
    # the same run id in two accounts: each account's steps read with that account bound
    assert {p["account"] for sql, p in client.asked if "FROM steps" in sql} == {"acme", "globex"}
    page = rp.failures_html(section)
    assert re.findall(r'<tr data-run="(failure-\d)">', page) == ["failure-1", "failure-2"]
    assert page.count('<section class="run" id="failure-') == 2
    assert 'href="#failure-1"' in page and 'href="#failure-2"' in page
    assert 'id="failure-1-timeline"' in page and 'id="failure-2-timeline"' in page
    # the failing step of the list: the first step whose last attempt failed, with its message
    row = re.search(r'<tr data-run="failure-1">(.*?)</tr>', page, re.S)
    assert row and "4 &lt;script&gt;" in row.group(1) and "CRM_SYNC" in row.group(1)
    assert "<script>alert" not in page


def test_a_failing_query_is_reported_in_the_section():
    class Broken:
        def query(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("Code: 60. DB::Exception: Unknown table runs\nmore")

    section = rp.collect_failures(Broken(), "SELECT 1", {})
    assert section.error == "Unknown table runs"
    assert 'class="error">query failed: Unknown table runs' in rp.failures_html(section)
