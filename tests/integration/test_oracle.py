"""A realistic workload with duplicates, out-of-order and late events, replays and bad lines,
published with `runlens publish`: the `runs` and `steps` views equal a batch recomputation
from the raw lines, row by row."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from producers.workload import WorkloadConfig, generate, perturb
from tests.helpers import run_cli, wait_caught_up
from tests.oracle import (actual_runs, actual_steps, diff, expected_runs, expected_steps, run_ids_mentioned,
                          valid_events)

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 16, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def perturbed_file(tmp_path_factory):
    config = WorkloadConfig(seed=11, accounts=3, backfill_runs_per_hour=1000)
    events = generate(config, START, START + timedelta(hours=6))
    lines = list(perturb(events, seed=11, duplicate_rate=0.05, reorder_rate=0.05, late_rate=0.02,
                         bad_line_rate=0.01))
    path = tmp_path_factory.mktemp("oracle") / "perturbed.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, lines


@pytest.fixture(scope="module")
def published(perturbed_file, embedded_stack, stack_settings):
    path, _ = perturbed_file
    result = run_cli(stack_settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    wait_caught_up(embedded_stack)
    return result


def test_file_has_the_faults_it_claims(perturbed_file):
    _, lines = perturbed_file
    events = valid_events(lines)
    assert len(lines) - len(events) > 100          # duplicates and bad lines are there
    assert len({e.run_id for e in events}) > 1000
    assert any(e.replay_of for e in events)


def test_runs_view_equals_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = expected_runs(valid_events(lines))
    actual = actual_runs(reader, run_ids_mentioned(lines))
    assert len(actual) == len(expected)
    assert diff(expected, actual) == []


def test_steps_view_equals_batch_recomputation(perturbed_file, published, reader):
    _, lines = perturbed_file
    expected = expected_steps(valid_events(lines))
    actual = actual_steps(reader, run_ids_mentioned(lines))
    assert len(actual) == len(expected)
    assert diff(expected, actual) == []


def test_every_bad_line_is_dead_lettered_once(perturbed_file, published, reader):
    path, lines = perturbed_file
    bad = len(lines) - sum(1 for _ in valid_events(lines)) - _duplicates(lines)
    rows = reader.query("SELECT count(), uniqExact(source_offset) FROM rejected_events WHERE source = {s:String}",
                        parameters={"s": f"file:{path}"}).result_rows
    assert rows == [(bad, bad)]


def _duplicates(lines) -> int:
    from schemas import Rejection, parse_event

    ids = [e.event_id for e in (parse_event(ln) for ln in lines) if not isinstance(e, Rejection)]
    return len(ids) - len(set(ids))
