"""Detector snapshots are written to the table in chunks under a manifest: any size fits Kafka's
record limit, and a crash midway leaves the previous snapshot current."""

from __future__ import annotations

import os

from streams.snapshots import SNAPSHOT_CHUNK_BYTES, read_snapshot, write_snapshot


def test_a_large_snapshot_round_trips_in_chunks_and_generations_alternate():
    table: dict[str, bytes] = {}
    first = os.urandom(2 * SNAPSHOT_CHUNK_BYTES + 10)
    write_snapshot(table, 3, first)
    assert read_snapshot(table, 3) == first
    assert max(len(v) for v in table.values()) <= SNAPSHOT_CHUNK_BYTES
    assert {k for k in table if k.startswith("3:")} == {"3:0:0", "3:0:1", "3:0:2"}
    second = os.urandom(100)
    write_snapshot(table, 3, second)
    assert read_snapshot(table, 3) == second and "3:1:0" in table
    assert read_snapshot(table, 4) is None


def test_a_crash_midway_leaves_the_previous_snapshot_current(monkeypatch):
    table: dict[str, bytes] = {}
    old = os.urandom(SNAPSHOT_CHUNK_BYTES + 1)
    write_snapshot(table, 0, old)

    class Crash(Exception):
        pass

    class Failing(dict):
        def __setitem__(self, key: str, value: bytes) -> None:
            if key == "0":          # the manifest: the crash comes before it
                raise Crash
            super().__setitem__(key, value)

    failing = Failing(table)
    try:
        write_snapshot(failing, 0, os.urandom(3 * SNAPSHOT_CHUNK_BYTES))
    except Crash:
        pass
    assert read_snapshot(failing, 0) == old


def test_a_damaged_snapshot_is_not_used(caplog):
    table: dict[str, bytes] = {}
    write_snapshot(table, 1, os.urandom(SNAPSHOT_CHUNK_BYTES + 5))
    table["1:0:1"] = b"x"
    assert read_snapshot(table, 1) is None
    assert "not whole" in caplog.text
    assert SNAPSHOT_CHUNK_BYTES < 1_000_000
