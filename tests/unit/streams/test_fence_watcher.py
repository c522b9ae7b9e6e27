"""The worker's side of the migration fence (``streams.fence.FenceWatcher``) against a real chDB
in this process, with a migrator on another client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.clickhouse import apply_migrations, bookkeeping_statements, connect, latest_version, migrate
from sinks.fence import FenceOptions, WriteGate, current_fence, raise_fence, release_fence, waiting_for
from streams.fence import FenceWatcher, group_member_id

DB = "fenced"


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[tuple]:
    """Two clients on one fresh chDB, migrated: the migrator's and the worker's."""
    migrator, worker = connect(f"chdb://{tmp_path}"), connect(f"chdb://{tmp_path}")
    migrate(migrator, DB, fence=None)
    yield migrator, worker
    worker.close()
    migrator.close()



def test_a_member_id_is_read_without_creating_a_consumer() -> None:
    class Nothing:
        _consumer = None

    assert group_member_id(Nothing()) == ""


def _watcher(client, gate: WriteGate, name: str = "host:1", needed: int | None = None) -> FenceWatcher:
    return FenceWatcher(client, DB, gate, worker=name, member=lambda: f"member-{name}", needed_version=needed,
                        poll=0.05, heartbeat=0.05)


def test_a_worker_acknowledges_only_after_its_insert_in_flight_finished(clients) -> None:
    migrator, client = clients
    gate = WriteGate()
    watcher = _watcher(client, gate)
    watcher.step()
    assert gate.admit(wait=0)                      # an insert passed before the fence
    fence_id = raise_fence(migrator, DB, 99)
    watcher.step()
    assert not gate.admit(wait=0)                  # no new insert passes
    assert waiting_for(migrator, DB, fence_id, {"member-host:1": "w"}) == ["group member w", "worker host:1"]
    gate.leave()                                   # the insert is done
    watcher.step()
    assert waiting_for(migrator, DB, fence_id, {"member-host:1": "w"}) == []
    release_fence(migrator, DB, fence_id)
    watcher.step()
    assert gate.admit(wait=0)
    gate.leave()


def test_after_the_release_a_worker_waits_for_the_schema_it_needs(clients) -> None:
    migrator, client = clients
    gate = WriteGate()
    watcher = _watcher(client, gate, needed=latest_version() + 1)
    fence_id = raise_fence(migrator, DB, latest_version() + 1)
    watcher.step()
    release_fence(migrator, DB, fence_id)
    watcher.step()
    assert not gate.admit(wait=0)                  # released, but the version it needs is not there
    migrator.insert(f"{DB}.schema_migrations", [[latest_version() + 1, "next.sql"]], column_names=["version", "name"])
    watcher.step()
    assert gate.admit(wait=0)
    gate.leave()


def test_migrate_waits_for_every_present_worker_then_releases(clients) -> None:
    migrator, client = clients
    gate = WriteGate()
    watcher = _watcher(client, gate).start()
    try:
        wait = FenceOptions(timeout=30, interval=0.05)
        extra = (latest_version() + 1, "next.sql", [f"CREATE TABLE IF NOT EXISTS {DB}.next (a UInt8) "
                                                     "ENGINE = MergeTree ORDER BY a"])
        applied = apply_migrations(migrator, DB, bookkeeping_statements(DB), [extra], fence=wait)
        assert applied == ["next.sql"]
        fence = current_fence(migrator, DB)
        assert fence is not None and fence.released
        acks = migrator.query(f"SELECT worker, member FROM {DB}.schema_fence WHERE kind = 'ack'").result_rows
        assert acks == [("host:1", "member-host:1")]
    finally:
        watcher.stop()
    alive = migrator.query(f"SELECT argMax(alive, at) FROM {DB}.schema_fence WHERE kind = 'presence'").result_rows
    assert alive == [(0,)]                         # a stopped worker says so: the next fence does not wait
