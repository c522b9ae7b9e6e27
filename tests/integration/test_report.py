"""`runlens report` on the shared workload, opened in headless Chromium: every panel's chart
is drawn, nothing failed, and a screenshot is kept in the test's tmp dir. The same for the
report's "Last failures" section and for `runlens runs show RUN --html`: each run's step
timeline draws one bar per step attempt."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboards import panels as P
from dashboards import run_page
from dashboards.report import write_report
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 16, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def report_file(reader, published, tmp_path_factory) -> Path:
    return write_report(reader, tmp_path_factory.mktemp("report") / "report.html", T0, T1, {"account": "acme"},
                        last_failures=run_page.LAST_FAILURES, needing_attention=True)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120)


def _failures(page: str) -> list[tuple[str, str]]:
    """(anchor, run id) of the "Last failures" list, in order."""
    return re.findall(r'<tr data-run="(failure-\d+)"><td>[^<]*</td><td><a href="#failure-\d+">([^<]+)</a>', page)


def _attempts(reader, account: str, run_id: str) -> int:
    result = reader.query("SELECT count() FROM steps WHERE account_id = {a:String} AND run_id = {r:String}",
                          parameters={"a": account, "r": run_id})
    return int(result.result_rows[0][0])


def _figure_bars(page: str, div_id: str) -> int:
    """Bars of the plotly figure embedded for ``div_id`` (its data, as the page hands it to plotly)."""
    match = re.search(r'Plotly\.newPlot\(\s*"' + re.escape(div_id) + r'",\s*(\[.*?\]),\s*\{"', page, re.S)
    assert match, div_id
    return sum(len(trace["y"]) for trace in json.loads(match.group(1)) if trace["type"] == "bar")


def _drawn_bars(dom: str, div_id: str) -> int:
    """Bars plotly drew in the DOM for the timeline ``div_id`` (one ``<g class="point">`` each)."""
    start = dom.index(f'data-timeline="{div_id}"')
    end = dom.index("Step log</h", start)
    return dom[start:end].count('<g class="point"')


def _not_blank(png: Path) -> None:
    from PIL import Image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 50, "the screenshot is (nearly) blank"


def test_report_file_is_self_contained(report_file):
    page = report_file.read_text()
    panels = [(d, p) for d in P.ANALYTICS for p in d.panels]   # the dashboards the report draws
    assert page.count('class="panel"') == len(panels)
    assert '<section id="last-failures">' in page and '<a href="#last-failures">Last failures</a>' in page
    assert "query failed" not in page, re.findall(r'class="error">([^<]*)', page)[:3]
    assert "<script src=" not in page
    # the panels the workload fills carry rows (No data only where it cannot)
    empty = re.findall(r'data-panel="([^"]+)" data-type="[^"]+" data-rows="0"', page)
    assert set(empty) <= {"runlens-pipeline-panel-1", "runlens-pipeline-panel-2", "runlens-pipeline-panel-3",
                          "runlens-pipeline-panel-4", "runlens-pipeline-panel-5", "runlens-pipeline-panel-6",
                          "runlens-pipeline-panel-7"}, empty


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package: chromium)")
def test_every_chart_renders_in_chromium(report_file, tmp_path):
    url = report_file.resolve().as_uri()
    dom = _chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    panels = [(d, p) for d in P.ANALYTICS for p in d.panels]   # the dashboards the report draws
    rendered = re.findall(r'<div[^>]*id="([^"]+)"[^>]*class="[^"]*js-plotly-plot', html)
    rendered += re.findall(r'<div[^>]*class="[^"]*js-plotly-plot[^"]*"[^>]*id="([^"]+)"', html)
    failures = _failures(report_file.read_text())
    timelines = {f"{anchor}-timeline" for anchor, _ in failures}
    expected = {f"{d.uid}-panel-{p.id}" for d, p in panels} | timelines
    assert set(rendered) == expected, f"not drawn: {sorted(expected - set(rendered))}"
    # each drawn plot has its SVG (or, for tables and numbers, plotly's own SVG layers)
    assert html.count('class="main-svg"') >= len(panels)
    # "Workflows needing attention" is in the page as drawn, naming the known failing workflow
    _assert_attention(html)

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1400,7000",
                       f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000


def _known_failing_workflow(reader) -> str:
    """The acme workflow of the window with the most failed runs (12 % of its runs, against
    2-8 % for the others): what the attention section must name for its failure rate."""
    (workflow,), = reader.query(
        "SELECT workflow_id FROM runs WHERE account_id = 'acme' AND status = 'failed' "
        "AND finished_at >= '2026-11-16 00:00:00' AND finished_at < '2026-11-16 06:00:00' "
        "GROUP BY workflow_id ORDER BY count() DESC LIMIT 1").result_rows
    return workflow


def _assert_attention(page: str, workflow: str = "wf-welcome") -> None:
    assert '<section id="attention"><h2>Workflows needing attention</h2>' in page
    assert '<a href="#attention">Workflows needing attention</a>' in page
    section = page[page.index('<section id="attention">'):]
    section = section[:section.index("</section>")]
    assert "query failed" not in section
    rows = re.findall(r'<tr data-workflow="([^"]+)">', section)
    assert workflow in rows, rows
    row = section[section.index(f'<tr data-workflow="{workflow}">'):]
    row = row[:row.index("</tr>")]
    assert '<li data-reason="failure_rate">' in row and "runlens runs list --account acme --workflow" in row


def test_attention_section_names_the_known_failing_workflow(report_file, reader):
    workflow = _known_failing_workflow(reader)
    assert workflow == "wf-welcome"
    _assert_attention(report_file.read_text(), workflow)


def test_report_command(stack_settings, published, tmp_path):
    out = tmp_path / "cli-report.html"
    result = run_cli(stack_settings, "report", "--out", str(out), "--since", "2026-11-16T00:00:00Z",
                     "--until", "2026-11-16T06:00:00Z", "--account", "acme", "--type", "contact,card")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"wrote {out.resolve()}"
    page = out.read_text()
    assert page.count('class="panel"') == sum(len(d.panels) for d in P.ANALYTICS)
    # the CLI's report ends with the last failures, under the same filters, each with its details
    failures = _failures(page)
    assert 0 < len(failures) <= run_page.LAST_FAILURES and "query failed" not in page
    assert all(f'<section class="run" id="{anchor}">' in page for anchor, _ in failures)
    # the SQL shown per panel, and the values it was sent with (bound, never in the SQL text)
    assert "workflow_type IN (WITH decodeURLComponent({var_type:String})" in page
    assert "-- {var_type:String} = %7Bcontact%2Ccard%7D" in page
    assert '<section id="attention"><h2>Workflows needing attention</h2>' in page   # the CLI's report has it

    bad = run_cli(stack_settings, "report", "--out", str(out), "--since", "2026-11-16T06:00:00Z",
                  "--until", "2026-11-16T00:00:00Z")
    assert bad.returncode == 1 and bad.stderr.decode().count("\n") == 1 and "not before" in bad.stderr.decode()


def test_last_failures_list_the_window_s_latest_failed_runs(report_file, reader):
    page = report_file.read_text()
    failures = _failures(page)
    latest = reader.query(
        "SELECT run_id FROM runs WHERE account_id = 'acme' AND status = 'failed' "
        "AND finished_at >= toDateTime64({t0:String}, 3, 'UTC') AND finished_at <= toDateTime64({t1:String}, 3, 'UTC') "
        "ORDER BY finished_at DESC, run_id LIMIT {n:UInt32}",
        parameters={"t0": f"{T0:%Y-%m-%d %H:%M:%S}", "t1": f"{T1:%Y-%m-%d %H:%M:%S}", "n": run_page.LAST_FAILURES})
    assert [run_id for _, run_id in failures] == [row[0] for row in latest.result_rows]
    assert len(failures) == run_page.LAST_FAILURES
    for anchor, run_id in failures:
        # its own section: overview, timeline (one bar per attempt in the figure) and step log
        assert f'<section class="run" id="{anchor}"><h3>Run {run_id} ' in page
        assert _figure_bars(page, f"{anchor}-timeline") == _attempts(reader, "acme", run_id) > 0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package: chromium)")
def test_last_failures_render_in_chromium(report_file, reader, tmp_path):
    url = report_file.resolve().as_uri()
    dom = _chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    for anchor, run_id in _failures(report_file.read_text()):
        assert _drawn_bars(html, f"{anchor}-timeline") == _attempts(reader, "acme", run_id), anchor
    # the section on a page of its own (the report's head, the section only), so that its top is
    # what the screenshot shows (headless Chromium's scrolling to a #fragment is not dependable)
    page = report_file.read_text()
    alone = tmp_path / "last-failures.html"
    alone.write_text(page[:page.index("<nav>")] + page[page.index('<section id="last-failures">'):])
    shot = tmp_path / "last-failures.png"
    result = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1400,3000", f"--screenshot={shot}",
                       alone.resolve().as_uri())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    _not_blank(shot)


def _retried_failed_run(reader) -> tuple[str, int]:
    result = reader.query(
        "SELECT run_id, count() AS attempts FROM steps WHERE account_id = 'acme' AND run_id IN "
        "(SELECT run_id FROM runs WHERE account_id = 'acme' AND status = 'failed') "
        "GROUP BY run_id HAVING max(attempt) > 1 ORDER BY run_id LIMIT 1")
    run_id, attempts = result.result_rows[0]
    return run_id, int(attempts)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian package: chromium)")
def test_run_page_renders_in_chromium(stack_settings, published, reader, tmp_path):
    run_id, attempts = _retried_failed_run(reader)
    out = tmp_path / "run.html"
    result = run_cli(stack_settings, "runs", "show", run_id, "-a", "acme", "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"wrote {out.resolve()}"
    page = out.read_text()
    assert "<script src=" not in page and _figure_bars(page, "run-timeline") == attempts
    dom = _chromium(tmp_path, "--virtual-time-budget=20000", "--dump-dom", out.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr.decode()[-2000:]
    html = dom.stdout.decode()
    assert re.search(r'id="run-timeline"[^>]*class="[^"]*js-plotly-plot', html) or \
        re.search(r'class="[^"]*js-plotly-plot[^"]*"[^>]*id="run-timeline"', html)
    assert _drawn_bars(html, "run-timeline") == attempts
    shot = tmp_path / "run.png"
    result = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1400,2000", f"--screenshot={shot}",
                       out.resolve().as_uri())
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    _not_blank(shot)
