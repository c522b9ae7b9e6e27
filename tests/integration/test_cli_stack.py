"""The commands a user runs: `runlens up` with other commands talking to it, and the demo.
Both stop cleanly on a signal and leave no process behind."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from runlens.settings import Settings
from tests.helpers import cli_env, run_cli, wait_for

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is as good as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


@pytest.mark.timeout(300)
def test_up_serves_other_commands_and_stops_cleanly(tmp_path, run_prefix):
    settings = Settings(data_dir=tmp_path, topic_prefix=f"{run_prefix}up", database=f"{run_prefix}_up")
    up = subprocess.Popen([sys.executable, "-m", "runlens", "up", "--workers", "2"], env=cli_env(settings),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        stack = wait_for(lambda: json.loads(settings.stack_file.read_text()) if settings.stack_file.exists() else None,
                         lambda doc: doc is not None, timeout=120, what="the stack file")
        assert stack["pid"] == up.pid
        children = _children(up.pid)
        assert len(children) == 4  # broker, warehouse and two workers
        assert len(stack["worker_pids"]) == 2 and {stack["warehouse_pid"], *stack["worker_pids"]} <= set(children)

        sim = run_cli(settings, "simulate", "--backfill", "2h", "--duration", "0", "--bad-rate", "0.01")
        assert sim.returncode == 0, sim.stderr
        assert b"sent " in sim.stdout
        counts = wait_for(lambda: run_cli(settings, "query", "SELECT count() > 0, "
                                          "(SELECT count() FROM rejected_events) > 0 FROM runs", "-f", "csv").stdout,
                          lambda text: text.strip().endswith(b"1,1"), timeout=120, what="runs and rejections")
        assert counts
        def status() -> dict[str, list[str]]:
            result = run_cli(settings, "status", "-f", "csv")
            assert result.returncode == 0, result.stderr
            return {row[0]: row for row in csv.reader(io.StringIO(result.stdout.decode()))}
        # each worker reports the partitions it owns with its metrics (every 5 s)
        def both_own_partitions(p: dict[str, list[str]]) -> bool:
            rows = [p.get(w, ["", "", "", ""]) for w in ("worker 1", "worker 2")]
            return all(row[2] == "running" and row[3] != "" for row in rows)
        parts = wait_for(status, both_own_partitions, timeout=60, what="both workers running with partitions")
        assert parts["warehouse"][2] == "up" and "events stored" in parts["warehouse"][5]
        owned = sorted(int(p) for w in ("worker 1", "worker 2") for p in parts[w][3].split(","))
        assert owned == list(range(settings.partitions)), parts

        up.send_signal(signal.SIGINT)
        output, _ = up.communicate(timeout=60)
        assert up.returncode == 0, output
        assert b"stopped." in output
        assert not any(_alive(pid) for pid in children)
        assert not settings.stack_file.exists()
    finally:
        if up.poll() is None:
            up.kill()


@pytest.mark.timeout(400)
def test_demo_prints_the_summary_and_leaves_nothing_running(tmp_path, run_prefix):
    settings = Settings(data_dir=tmp_path, topic_prefix=f"{run_prefix}demo", database=f"{run_prefix}_demo")
    result = subprocess.run([sys.executable, "-m", "runlens", "demo", "--backfill", "6h", "--duration", "3s",
                             "--backfill-rate", "300"], env=cli_env(settings), capture_output=True, timeout=380)
    out = result.stdout.decode()
    assert result.returncode == 0, out + result.stderr.decode()
    for title in ("Runs by status", "Success rate by workflow type", "Run duration and queue wait",
                  "Top failing steps", "Events rejected"):
        assert title in out
    assert "consumer lag now 0" in out
    report = settings.data_dir.resolve() / "demo" / "report.html"
    assert f"report: {report}" in out.replace("\n", "") and report.stat().st_size > 100_000
    assert _processes_started_for(settings.data_dir.resolve()) == []


def _processes_started_for(data_dir: Path) -> list[int]:
    """Live processes whose environment or command line names this data directory."""
    needle = str(data_dir).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            blob = (proc / "environ").read_bytes() + (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in blob and _alive(int(proc.name)):
            found.append(int(proc.name))
    return found
