"""The contract's sample, published with `runlens publish` through the real broker and the
real Faust worker into chDB, read back through the read endpoint and `runlens query`."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from tests.helpers import run_cli, wait_caught_up
from tests.integration.sample_expectations import assert_sample_ingested, wait_for_sample

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sample_published(embedded_stack, stack_settings, sample_events_path, reader):
    result = run_cli(stack_settings, "publish", str(sample_events_path))
    assert result.returncode == 0, result.stderr
    wait_for_sample(reader, f"file:{sample_events_path}")
    return result


def test_publish_reports_rejected_lines_with_numbers(sample_published):
    assert b"published 9 events, rejected 2 lines" in sample_published.stdout
    stderr = sample_published.stderr.decode()
    assert "line 10: rejected: not valid JSON" in stderr
    assert "line 11: rejected: type: unknown event type 'run.exploded'" in stderr


def test_sample_lands_as_contract_rows(sample_published, sample_events_path, reader):
    assert_sample_ingested(reader, f"file:{sample_events_path}")


def test_republishing_the_same_file_changes_nothing(sample_published, embedded_stack, stack_settings,
                                                   sample_events_path, reader):
    sql = "SELECT * FROM runs WHERE run_id IN ('r1', 'r2') ORDER BY run_id"
    before = reader.query(sql).result_rows
    assert run_cli(stack_settings, "publish", str(sample_events_path)).returncode == 0
    wait_caught_up(embedded_stack)
    assert reader.query(sql).result_rows == before
    assert_sample_ingested(reader, f"file:{sample_events_path}")


def test_query_command_prints_csv_and_json(sample_published, stack_settings):
    sql = "SELECT run_id, status, duration_ms FROM runs WHERE run_id IN ('r1', 'r2') ORDER BY run_id"
    as_csv = run_cli(stack_settings, "query", sql, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout.decode()))) == [
        ["run_id", "status", "duration_ms"], ["r1", "failed", "30050"], ["r2", "pending", ""]]
    as_json = run_cli(stack_settings, "query", sql, "--format", "json")
    assert [orjson.loads(ln) for ln in as_json.stdout.splitlines()] == [
        {"run_id": "r1", "status": "failed", "duration_ms": 30050},
        {"run_id": "r2", "status": "pending", "duration_ms": None}]


def test_read_endpoint_refuses_writes(sample_published, stack_settings):
    result = run_cli(stack_settings, "query", "DROP TABLE events")
    assert result.returncode == 1
    assert result.stderr.decode().startswith("runlens: error: query failed:")
    assert "readonly" in result.stderr.decode().lower()


def test_bad_sql_is_one_line_error(sample_published, stack_settings):
    result = run_cli(stack_settings, "query", "SELECT nosuchcolumn FROM runs")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "nosuchcolumn" in lines[0]
