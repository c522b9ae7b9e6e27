"""The migration fence (``sinks.fence``): the write gate alone, then the migrator against a
real chDB in this process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import (
    FenceTimeout,
    Warehouse,
    WarehousePaused,
    apply_migrations,
    bookkeeping_statements,
    connect,
    latest_version,
    migrate,
)
from sinks.cluster import on_cluster, replicated_engines
from sinks.fence import (
    SELF_LEASE_SECONDS,
    FenceOptions,
    WriteGate,
    acknowledge,
    announce,
    current_fence,
    fence_table_statement,
    outstanding,
    raise_fence,
)

DB = "fenced"
DB = "fenced"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# --------------------------------------------------------------------------- the gate alone


def test_the_gate_is_closed_until_the_first_check_and_open_only_within_the_lease() -> None:
    clock = Clock()
    gate = WriteGate(clock)
    assert not gate.admit(wait=0) and "not been checked" in gate.reason
    gate.open_until(clock.now + SELF_LEASE_SECONDS)
    assert gate.admit(wait=0) and gate.writing == 1
    gate.leave()
    clock.now += SELF_LEASE_SECONDS   # no check for a whole lease: inserts wait
    assert not gate.admit(wait=0) and "could not be checked" in gate.reason
    gate.open_until(clock.now + SELF_LEASE_SECONDS)
    assert gate.admit(wait=0) and gate.reason == ""
    gate.leave()


def test_a_closed_gate_drains_the_inserts_that_passed_and_admits_none() -> None:
    gate = WriteGate()
    gate.open_until(time.monotonic() + 60)
    assert gate.admit(wait=0)
    gate.close("a migration is running")
    assert not gate.admit(wait=0.05)
    assert not gate.drained(timeout=0.05)   # the insert that passed is still running
    threading.Timer(0.1, gate.leave).start()
    assert gate.drained(timeout=5)
    gate.open_until(time.monotonic() + 60)
    assert gate.admit(wait=0)
    gate.leave()


def test_an_insert_waiting_at_the_gate_goes_on_as_soon_as_it_opens() -> None:
    gate = WriteGate()
    gate.close("a migration is running")
    threading.Timer(0.1, lambda: gate.open_until(time.monotonic() + 60)).start()
    started = time.monotonic()
    assert gate.admit(wait=5)
    assert time.monotonic() - started < 1
    gate.leave()


def test_who_is_outstanding_counts_present_workers_and_kafka_members() -> None:
    members = {"m-1": "runlens-worker-7@/10.0.0.2", "m-2": "old-worker@/10.0.0.3"}
    assert outstanding({"a:1"}, {"m-1"}, ["a:1", "b:2"], members) == [
        "worker b:2", "group member old-worker@/10.0.0.3"]
    assert outstanding({"a:1", "b:2"}, {"m-1", "m-2"}, ["a:1", "b:2"], members) == []
    assert outstanding(set(), set(), [], {}) == []


def test_the_fence_table_has_a_cluster_form() -> None:
    rendered = on_cluster(fence_table_statement("db"), "c")
    assert " ON CLUSTER c " in rendered and len(replicated_engines(rendered)) == 1
    assert "schema_fence" in on_cluster(bookkeeping_statements("db")[-1], "c")


# --------------------------------------------------------------------------- against chDB


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple]:
    """Two clients on one fresh chDB, migrated: the migrator's and a worker's (``streams.fence``'s
    tests use it too)."""
    migrator, worker = connect(f"chdb://{tmp_path}"), connect(f"chdb://{tmp_path}")
    migrate(migrator, DB, fence=None)
    yield migrator, worker
    worker.close()
    migrator.close()


def test_a_fence_nobody_acknowledges_times_out_released_and_nothing_applied(clients) -> None:
    migrator, _ = clients
    announce(migrator, DB, "stuck:9", "")
    extra = (latest_version() + 1, "next.sql", [f"CREATE TABLE {DB}.next (a UInt8) ENGINE = MergeTree ORDER BY a"])
    with pytest.raises(FenceTimeout) as raised:
        apply_migrations(migrator, DB, bookkeeping_statements(DB), [extra],
                         fence=FenceOptions(timeout=0.3, interval=0.05, members=lambda: {"m-x": "old@/10.0.0.9"}))
    message = str(raised.value)
    assert "\n" not in message and "worker stuck:9" in message and "group member old@/10.0.0.9" in message
    fence = current_fence(migrator, DB)
    assert fence is not None and fence.released
    assert migrator.query(f"EXISTS TABLE {DB}.next").result_rows[0][0] == 0


def test_a_failing_migration_still_releases_the_fence(clients) -> None:
    migrator, _ = clients
    bad = (latest_version() + 1, "bad.sql", ["SELECT no_such_function()"])
    with pytest.raises(Exception, match="no_such_function"):
        apply_migrations(migrator, DB, bookkeeping_statements(DB), [bad], fence=FenceOptions(timeout=5))
    fence = current_fence(migrator, DB)
    assert fence is not None and fence.released


def test_a_fence_left_raised_by_a_migrator_that_died_is_released_by_the_next(clients) -> None:
    migrator, _ = clients
    raise_fence(migrator, DB, latest_version())   # and then the migrator died
    assert migrate(migrator, DB) == []
    fence = current_fence(migrator, DB)
    assert fence is not None and fence.released


def test_a_gated_insert_reports_a_pause_and_is_retried(clients) -> None:
    migrator, client = clients
    gate = WriteGate()
    gate.close("a migration to schema version 99 is running (fence f)")
    warehouse = Warehouse(client, DB, gate=gate)
    columns = {"kind": ["x"], "fence_id": ["f"]}
    with pytest.raises(WarehousePaused, match="schema version 99"):
        warehouse.insert_columns("schema_fence", columns, "t1")
    gate.open_until(time.monotonic() + 60)
    warehouse.insert_columns("schema_fence", columns, "t1")
    assert gate.writing == 0
    acknowledge(migrator, DB, "f", "w", "")   # the table takes the kinds it knows and others alike
    assert migrator.query(f"SELECT count() FROM {DB}.schema_fence WHERE fence_id = 'f'").result_rows[0][0] == 2
