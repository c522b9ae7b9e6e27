"""Composition root of the embedded warehouse process: chDB's owner, serving ClickHouse's HTTP.

Run as ``runlens warehouse`` (``runlens up`` starts and supervises it). It applies the
migrations to its data directory, then serves the writer (the workers) and the reader (every
query, the explorer, the report, the bench) on one loopback port, as a ClickHouse server would.
A worker's crash no longer takes the readers down; this process's crash stops both until
``runlens up`` restarts it (the broker keeps the events; the workers retry their batch).
"""

from __future__ import annotations

import logging
import signal
import threading

from pydantic import SecretStr

from embedded.access import READER_USER, WRITER_USER, Credentials
from embedded.read_policy import ReadLimits
from embedded.warehouse_server import WarehouseServer
from runlens.settings import Settings
from sinks.clickhouse import connect, migrate

log = logging.getLogger(__name__)


def _credentials(user: str, secret: SecretStr | None, variable: str) -> Credentials:
    if not secret or not secret.get_secret_value():
        log.warning("%s is not set: the warehouse accepts no %s (`runlens up` sets it)", variable, user)
    return Credentials.given_or_generated(user, secret.get_secret_value() if secret else None)


def run_warehouse(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT. Migrations are applied before the port opens, so a client
    that reaches the port finds the current schema, and no worker writes while they run (so no
    migration fence is needed; one left raised by a `runlens migrate` that stopped is released)."""
    path = settings.embedded_warehouse_path
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    client = connect(f"chdb://{path}")
    try:
        applied = migrate(client, settings.database, fence=None)   # no worker can reach the port yet
    finally:
        client.close()
    if applied:
        log.info("applied migrations %s", ", ".join(applied))
    server = WarehouseServer(
        str(path), database=settings.database,
        reader=_credentials(READER_USER, settings.read_password, "RUNLENS_READ_PASSWORD"),
        writer=_credentials(WRITER_USER, settings.write_password, "RUNLENS_WRITE_PASSWORD"),
        limits=ReadLimits.from_settings(settings), port=settings.warehouse_port)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    log.info("warehouse serving on %s", server.start())
    try:
        stopped.wait()
    finally:
        server.stop()
