"""Reliability scenarios: each runs a fresh embedded stack under a realistic load, injects
faults, and compares the final views with a batch recomputation from the events that were
acknowledged (the oracle). `RUNLENS_RELIABILITY=full` runs the long variants."""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from embedded.stack import EmbeddedStack
from producers.workload import WorkloadConfig, generate, perturb
from runlens.settings import Settings
from sinks.clickhouse import connect
from tests.oracle import (
    actual_runs,
    actual_steps,
    diff,
    expected_queue_depth,
    expected_run_stats,
    expected_runs,
    expected_step_stats,
    expected_steps,
    run_ids_mentioned,
    valid_events,
)

FULL = os.environ.get("RUNLENS_RELIABILITY") == "full"
START = datetime(2026, 11, 12, 0, 0, tzinfo=UTC)


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.reliability)


@dataclass
class Workload:
    path: Path
    lines: list[bytes]

    @property
    def events(self):
        return valid_events(self.lines)


def make_workload(tmp_path: Path, *, hours: float, seed: int = 3, runs_per_hour: float = 2000,
                  duplicate_rate: float = 0.0, reorder_rate: float = 0.0, late_rate: float = 0.0,
                  bad_line_rate: float = 0.0) -> Workload:
    config = WorkloadConfig(seed=seed, accounts=3, backfill_runs_per_hour=runs_per_hour)
    events = generate(config, START, START + timedelta(hours=hours))
    lines = list(perturb(events, seed=seed, duplicate_rate=duplicate_rate, reorder_rate=reorder_rate,
                         late_rate=late_rate, bad_line_rate=bad_line_rate))
    path = tmp_path / "workload.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return Workload(path, lines)


_STACKS = itertools.count()


@pytest.fixture
def stack_factory(tmp_path, run_prefix):
    """Start a fresh stack with extra settings; stopped at the end of the test. Every stack of the
    run gets names of its own (topics, consumer group, database): a client a failed test left
    behind, retrying a port a later test's broker now listens on, finds none of that test's topics."""
    started: list[EmbeddedStack] = []

    def start(**overrides) -> EmbeddedStack:
        name = f"{run_prefix}r{next(_STACKS)}"
        settings = Settings(data_dir=tmp_path / name, topic_prefix=name, database=name, log_level="INFO",
                            **overrides)
        stack = EmbeddedStack(settings).start()
        started.append(stack)
        return stack

    yield start
    for stack in started:
        stack.stop()


def reader_of(stack: EmbeddedStack):
    return connect(stack.reader_dsn, database=stack.settings.database)


def oracle_problems(client, workload: Workload) -> list[str]:
    """Every difference between the views and the recomputation (empty when all agree)."""
    events = workload.events
    ids = run_ids_mentioned(workload.lines)
    problems = [f"runs: {p}" for p in diff(expected_runs(events), actual_runs(client, ids))]
    problems += [f"steps: {p}" for p in diff(expected_steps(events), actual_steps(client, ids))]
    expected_stats = {k: {"counts": (v["finished"], v["succeeded"], v["failed"], v["stopped"], len(v["queue_waits"]))}
                      for k, v in expected_run_stats(events).items()}
    rows = client.query("SELECT bucket, account_id, workflow_id, workflow_version, workflow_type, trigger, site_id, "
                        "card_id, finished, succeeded, failed, stopped, queue_samples FROM run_stats").result_rows
    problems += [f"run_stats: {p}"
                 for p in diff(expected_stats, {tuple(r[:8]): {"counts": tuple(r[8:])} for r in rows})]
    expected_steps_ = {k: {"counts": (v["executions"], v["failed"], v["skipped"], v["retries"])}
                       for k, v in expected_step_stats(events).items()}
    rows = client.query("SELECT bucket, account_id, workflow_id, workflow_version, step_id, step_name, step_type, "
                        "executions, failed, skipped, retries FROM step_stats").result_rows
    problems += [f"step_stats: {p}"
                 for p in diff(expected_steps_, {tuple(r[:7]): {"counts": tuple(r[7:])} for r in rows})]
    depth = {(a, t): (p, r) for a, t, p, r in
             client.query("SELECT account_id, time, pending, running FROM queue_depth").result_rows}
    problems += [f"queue_depth: {p}" for p in diff({k: {"v": v} for k, v in expected_queue_depth(events).items()},
                                                   {k: {"v": v} for k, v in depth.items()})]
    return problems


def report(name: str, **figures) -> None:
    """Print a scenario's figures (shown with -s, and in CI logs on failure)."""
    print(f"\n[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def dump(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"



