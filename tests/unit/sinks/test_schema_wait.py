"""Workers never migrate: they wait for the schema version their code needs, which one party (the
warehouse process, `runlens migrate`) applies while no worker inserts."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from sinks.clickhouse import (
    WarehouseUnavailable,
    connect,
    latest_version,
    migrate,
    migration_files,
    schema_version,
    wait_for_schema,
)


def test_the_needed_version_is_the_last_migration_shipped() -> None:
    assert latest_version() == migration_files()[-1][0] >= 8


def test_a_worker_waits_for_the_migration_and_gives_up_with_the_fix(tmp_path: Path) -> None:
    client = connect(f"chdb://{tmp_path}")
    try:
        assert schema_version(client, "waiting") == 0
        with pytest.raises(WarehouseUnavailable, match="runlens migrate"):
            wait_for_schema(client, "waiting", timeout=0.3, interval=0.05)
        migrator = threading.Timer(0.5, lambda: migrate(client, "waiting"))
        migrator.start()
        assert wait_for_schema(client, "waiting", timeout=60, interval=0.05) == latest_version()
        migrator.join()
        assert schema_version(client, "waiting") == latest_version()
    finally:
        client.close()
