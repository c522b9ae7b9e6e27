"""Smoke test of `runlens bench --quick`: it runs end to end as a user would run it and leaves a
complete result file, a markdown table and a chart. No timing is asserted anywhere: only that
every figure is there, that rates are positive and that the worker caught up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runlens.settings import Settings
from tests.helpers import run_cli

pytestmark = pytest.mark.integration


def _percentiles_present(block: dict) -> None:
    assert block["observed"] > 0 and block["missing"] == 0, block
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        assert block[key] is not None and block[key] >= 0, (key, block)


@pytest.fixture(scope="module")
def quick_bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    settings = Settings(data_dir=root / "data")
    out = root / "results"
    result = run_cli(settings, "bench", "--quick", "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0], result


def test_quick_bench_writes_a_complete_result(quick_bench):
    folder, result = quick_bench
    doc = json.loads((folder / "bench.json").read_text())
    assert doc["errors"] == []
    assert doc["options"]["quick"] is True
    machine = doc["machine"]
    assert machine["cpus"] >= 1 and machine["ram_gib"] and machine["python"] and machine["cpu_model"]
    assert doc["bench_process_rss_mb_peak"] > 0

    for name in ("B0", "B1", "B2", "B2_in_process"):
        baseline = doc["baselines"][name]
        assert baseline["events"] == doc["workload"]["events"]
        assert baseline["events_per_s"] > 0 and baseline["what"]
    b2 = doc["baselines"]["B2"]   # into a warehouse process over HTTP: its CPU and RSS measured too
    assert "warehouse process" in b2["what"] and "chdb://" in doc["baselines"]["B2_in_process"]["what"]
    for key in ("warehouse_cpu_s_per_million", "warehouse_rss_mb_idle", "warehouse_rss_mb_after",
                "warehouse_rss_mb_peak"):
        assert b2[key] is not None and b2[key] > 0, key
    assert doc["baselines"]["B2_in_process"]["ratio_to_B2"] > 0
    # the peer yardstick (quix-streams): measured on every event, or skipped with its reason (a quick
    # bench where no peer venv was built yet); a peer that ran and failed fails here
    p1 = doc["baselines"]["P1"]
    assert "error" not in p1, p1
    assert p1.get("skipped") or (p1["events"] == doc["workload"]["events"] and p1["events_per_s"] > 0), p1
    assert doc["peer"]["verdict"] and (p1.get("skipped") or doc["peer"]["runlens_to_P1"] > 0), doc["peer"]

    throughput = doc["pipeline"]["throughput"]
    assert throughput["final_lag"] == 0
    assert throughput["events"] == doc["workload"]["events"] and throughput["events_per_s"] > 0
    assert set(throughput["ratio_to"]) == {"B0", "B1", "B2", "B2_in_process"}
    assert throughput["warehouse_cpu_s_per_million"] > 0
    assert all(v is not None and v > 0 for v in throughput["ratio_to"].values())
    assert set(doc["pipeline"]["throughput_by_producer"]) == {"emitter", "sink", "single"}
    poison = doc["pipeline"]["poison"]   # every bad line dead-lettered, every valid event stored
    assert poison["bad_lines"] == poison["valid_events"] // 100 and poison["final_lag"] == 0
    assert poison["ratio_to_clean_run"] is not None and poison["ratio_to_clean_run"] > 0

    latency = doc["pipeline"]["latency"]
    assert [row["target_pct_of_max"] for row in latency] == [25, 50, 80]
    for row in latency:
        assert row["final_lag"] == 0 and row["probes"] > 0
        _percentiles_present(row["runs_view"])
        _percentiles_present(row["run_stats"])
        _percentiles_present(row["kafka_hop"])

    # the pipeline phase ran the settings' one worker; the workers phase the same events on two
    assert doc["pipeline"]["workers"] == 1
    by_workers = doc["pipeline"]["throughput_by_workers"]
    assert set(by_workers) == {"1", "2"} and all(rate > 0 for rate in by_workers.values())
    assert by_workers["1"] == throughput["events_per_s"]
    side = doc["pipeline"]["workers_side_by_side"]
    for n in ("1", "2"):
        assert len(side[n]["workers_rss_mb_after"]) == int(n) and all(side[n]["workers_rss_mb_after"])
        assert side[n]["warehouse_rss_mb_after"] > 0 and side[n]["ratio_to_B2"] > 0
    assert side["2"]["run"]["final_lag"] == 0 and side["2"]["run"]["workers"] == 2
    assert side["2"]["run"]["events_stored_total"] >= side["2"]["events"]   # after the warm-up events

    resources = doc["resources"]
    for key in ("worker_rss_mb_idle", "worker_rss_mb_steady", "worker_rss_mb_peak",
                "worker_cpu_s_per_million_at_max", "warehouse_rss_mb_idle", "warehouse_rss_mb_after_throughput",
                "warehouse_rss_mb_peak", "warehouse_cpu_s_per_million_at_max"):
        assert resources[key] is not None and resources[key] > 0, key
    soak = resources["soak"]
    assert soak["final_lag"] == 0 and len(soak["samples"]) >= 2 and soak["growth_mb"] is not None

    sizes = doc["queries"]["sizes"]
    assert len(sizes) == 1 and sizes[0]["events_stored"] > 0
    queries = sizes[0]["queries"]
    kinds = {q["kind"] for q in queries}
    assert {"summary", "stats"} <= kinds
    for q in queries:
        if q["kind"] in ("summary", "stats"):
            assert "error" not in q, q
            assert q["p50_ms"] is not None and q["p95_ms"] is not None, q
        else:
            assert "error" in q or q["p50_ms"] is not None, q
    # the Run details panels are timed on one run, as a user opens it, never over every run
    shown = sizes[0]["shown_run"]
    assert shown["account"] and shown["run"], shown
    run_panels = [q for q in queries if q["name"].startswith("run/")]
    assert len(run_panels) == 4 and all("error" not in q and q["rows"] < 100 for q in run_panels), run_panels

    markdown = (folder / "bench.md").read_text()
    for heading in ("## Throughput", "## Workers side by side", "## Event → queryable latency", "## Resources",
                    "## Query speed"):
        assert heading in markdown
    assert markdown.splitlines()[2].startswith("Machine:")
    assert "## Throughput" in result.stdout.decode()
    assert "B2 in process" in markdown and "warehouse process: RSS after the max-rate run" in markdown
    png = (folder / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not (folder / "scratch").exists()
    assert not list(Path.cwd().glob("bench-*-worker-data")), "Faust data folders left in the working directory"


@pytest.mark.parametrize("args, message", [
    (["--soak", "abc"], "--soak: invalid duration 'abc'"),
    (["--history", "1x"], "--history: invalid event count '1x'"),
    (["--rates", "0,50"], "--rates:"),
    (["--workers", "0"], "Invalid value for '--workers': Input should be greater than or equal to 1"),
    (["--workers", "33"], "Invalid value for '--workers': Input should be less than or equal to 32"),
    (["--workers", "two"], "Invalid value for '--workers'"),
])
def test_bad_arguments_are_one_line_errors(tmp_path, args, message):
    result = run_cli(Settings(data_dir=tmp_path / "data"), "bench", "--quick", "--out", str(tmp_path / "r"), *args)
    assert result.returncode != 0
    stderr = result.stderr.decode()
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "r").exists()
