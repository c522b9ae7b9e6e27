"""`runlens report` on the shared workload, opened in headless Chromium: every panel's chart
is drawn, nothing failed, and a screenshot is kept in the test's tmp dir."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dashboards import panels as P
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
    return write_report(reader, tmp_path_factory.mktemp("report") / "report.html", T0, T1, {"account": "acme"})


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          timeout=120)


def test_report_file_is_self_contained(report_file):
    page = report_file.read_text()
    panels = P.all_panels()
    assert page.count('class="panel"') == len(panels)
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
    panels = P.all_panels()
    rendered = re.findall(r'<div[^>]*id="([^"]+)"[^>]*class="[^"]*js-plotly-plot', html)
    rendered += re.findall(r'<div[^>]*class="[^"]*js-plotly-plot[^"]*"[^>]*id="([^"]+)"', html)
    expected = {f"{d.uid}-panel-{p.id}" for d, p in panels}
    assert set(rendered) == expected, f"not drawn: {sorted(expected - set(rendered))}"
    # each drawn plot has its SVG (or, for tables and numbers, plotly's own SVG layers)
    assert html.count('class="main-svg"') >= len(panels)

    shot = tmp_path / "report.png"
    result = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1400,7000",
                       f"--screenshot={shot}", url)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000


def test_report_command(stack_settings, published, tmp_path):
    out = tmp_path / "cli-report.html"
    result = run_cli(stack_settings, "report", "--out", str(out), "--since", "2026-11-16T00:00:00Z",
                     "--until", "2026-11-16T06:00:00Z", "--account", "acme", "--type", "contact,card")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == f"wrote {out.resolve()}"
    page = out.read_text()
    assert page.count('class="panel"') == len(P.all_panels())
    # the SQL shown per panel, and the values it was sent with (bound, never in the SQL text)
    assert "workflow_type IN (WITH decodeURLComponent({var_type:String})" in page
    assert "-- {var_type:String} = %7Bcontact%2Ccard%7D" in page

    bad = run_cli(stack_settings, "report", "--out", str(out), "--since", "2026-11-16T06:00:00Z",
                  "--until", "2026-11-16T00:00:00Z")
    assert bad.returncode == 1 and bad.stderr.decode().count("\n") == 1 and "not before" in bad.stderr.decode()
