"""Workloads for the integration tests, published through the embedded stack of
``tests/conftest.py`` (one stack per test session, shared with the security tests)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from producers.workload import WorkloadConfig, generate, perturb
from tests.helpers import run_cli, wait_caught_up
from tests.integration.oracle_window import START


@pytest.fixture(scope="session")
def perturbed_file(tmp_path_factory):
    config = WorkloadConfig(seed=11, accounts=3, backfill_runs_per_hour=1000)
    events = generate(config, START, START + timedelta(hours=6))
    lines = list(perturb(events, seed=11, duplicate_rate=0.05, reorder_rate=0.05, late_rate=0.02,
                         bad_line_rate=0.01))
    path = tmp_path_factory.mktemp("oracle") / "perturbed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


@pytest.fixture(scope="session")
def published(perturbed_file, embedded_stack, stack_settings):
    path, _ = perturbed_file
    result = run_cli(stack_settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    wait_caught_up(embedded_stack)
    return result
