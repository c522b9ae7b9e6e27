"""Export at scale and retention by plan, each on a warehouse of its own (a chDB directory in a
child process; see warehouse_probe.py). No timings are asserted."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from runlens.settings import Settings
from tests.helpers import cli_env

pytestmark = pytest.mark.integration

BIG = 1_000_000


def _probe(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tests.integration.warehouse_probe", *args], capture_output=True,
                          timeout=600, **kwargs)


@pytest.fixture(scope="module")
def scale_warehouse(tmp_path_factory, run_prefix):
    """A warehouse holding 1,000,000 finished runs of account `bulk` and 10,000 of `small`, read
    through the embedded read endpoint, as `runlens export` reads a running stack."""
    path = tmp_path_factory.mktemp("scale") / "warehouse"
    db = f"{run_prefix}scale"
    server = subprocess.Popen([sys.executable, "-m", "tests.integration.warehouse_probe", "serve", str(path), db,
                               str(BIG)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = server.stdout.readline().decode().strip()
        assert url.startswith("http://"), server.stderr.read().decode()[-2000:]
        yield url, db
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _export(tmp_path, url: str, db: str, account: str) -> tuple[dict, object]:
    out, report = tmp_path / f"{account}.csv", tmp_path / f"{account}.json"
    settings = Settings(data_dir=tmp_path, query_url=url, database=db)
    result = _probe("export", str(report), "export", "runs", "--account", account, "--out", str(out),
                    env=cli_env(settings))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    measured = json.loads(report.read_text())
    assert measured["code"] == 0
    return measured, out


def test_export_streams_a_million_rows_in_flat_memory(scale_warehouse, tmp_path):
    """The exporting process's peak memory is the same for 10k and 1M rows (a bounded factor,
    not a timing), and the file holds every row, correctly quoted."""
    url, db = scale_warehouse
    small, _ = _export(tmp_path, url, db, "small")
    big, out = _export(tmp_path, url, db, "bulk")
    print(f"export RSS peak: 10k rows {small['maxrss_kb'] / 1024:.0f} MiB, 1M rows {big['maxrss_kb'] / 1024:.0f} MiB; "
          f"Python heap peak: {small['heap_peak_bytes'] / 2**20:.1f} / {big['heap_peak_bytes'] / 2**20:.1f} MiB")
    assert big["maxrss_kb"] < small["maxrss_kb"] * 1.25 + 16 * 1024
    assert big["heap_peak_bytes"] < small["heap_peak_bytes"] * 1.5 + 4 * 2**20
    rows = 0
    with out.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        name, message, run_id = (header.index(c) for c in ("workflow_name", "error_message", "run_id"))
        for row in reader:
            if rows % 10 == 0:  # every tenth run failed, with quotes, a comma and a newline in its message
                assert row[message] == (f'Request to "https://api.example.com/v2", timed out;\nretry #{rows}')
            else:
                assert row[message] == ""
            assert row[name] == 'Bulk, "quoted" workflow' and row[run_id] == f"run_{rows:09d}"
            rows += 1
    assert rows == BIG


def test_retention_expires_old_runs_by_plan_and_keeps_names(tmp_path, run_prefix):
    """acme on free (7 days), globex on 30 days, initech without a plan: after the TTL merge only
    the runs within each account's retention remain, in events, runs and steps alike; a
    'default' plan then applies to accounts without one. Runs keep their site and card names."""
    report = tmp_path / "retention.json"
    result = _probe("retention", str(tmp_path / "warehouse"), f"{run_prefix}ret", str(report))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    seen = json.loads(report.read_text())
    everything = ["acme-10d", "acme-2d", "acme-40d", "globex-10d", "globex-2d", "globex-40d", "initech-2d",
                  "initech-400d"]
    for table in ("runs", "steps", "events"):
        assert sorted(seen["before"][table]) == everything, table
        assert sorted(seen["after"][table]) == ["acme-2d", "globex-10d", "globex-2d", "initech-2d",
                                                "initech-400d"], table
        assert sorted(seen["with_default"][table]) == ["acme-2d", "globex-10d", "globex-2d", "initech-2d"], table
    assert all(events == 3 for events in seen["after"]["events"].values())
    assert {(site, card) for _, site, card in seen["after"]["names"]} == {("A deleted site", "A deleted card")}
    assert seen["plans"] == {"default": 100, "enterprise": 365, "free": 7, "pro": 30}
    assert "transform(toString(account_id), ['acme', 'globex']" in seen["applied"]["run_state"]
