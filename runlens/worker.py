"""Composition root of the worker process: the warehouse client and the Faust worker.

Run as ``runlens worker`` (``runlens up`` starts N of them in one consumer group). It writes to
the warehouse through clickhouse-connect's HTTP client, to a ClickHouse server or to the
embedded warehouse process alike, and holds no data directory of its own beyond Faust's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
from dataclasses import fields

import faust

from embedded.stack import resolve_brokers, resolve_writer, topic_specs
from producers.kafka import ensure_topics
from runlens.settings import Settings
from sinks.clickhouse import Faults, Warehouse, connect, wait_for_schema
from sinks.fence import WriteGate
from streams.app import create_app
from streams.config import WorkerConfig
from streams.diagnostics import log_consumer_positions
from streams.fence import FenceWatcher, group_member_id

log = logging.getLogger(__name__)


def worker_config(settings: Settings) -> WorkerConfig:
    """What the Faust worker needs of ``settings``: its fields bear the same names there."""
    return WorkerConfig(**{field.name: getattr(settings, field.name) for field in fields(WorkerConfig)})


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; exits non-zero on a fatal error. Never migrates: waits until the
    schema has the version this code needs (applied by the warehouse process or `runlens migrate`)
    before it consumes anything, and pauses its inserts while `runlens migrate` holds the
    migration fence (``sinks.fence``, watched by ``streams.fence.FenceWatcher``). SIGUSR1 logs
    every task's stack (Faust's), SIGUSR2 where the consumer stands per partition
    (``streams.diagnostics``)."""
    brokers = resolve_brokers(settings)
    ensure_topics(brokers, topic_specs(settings))
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    writer = resolve_writer(settings)
    client = connect(writer, password=password)
    wait_for_schema(client, settings.database, timeout=settings.schema_wait_seconds)
    gate = WriteGate()
    warehouse = Warehouse(client, settings.database, dedup=settings.insert_dedup, gate=gate,
                          faults=Faults(settings.fault_lose_reply_every, settings.fault_outage_file))
    app = create_app(worker_config(settings), brokers, warehouse)
    watcher = FenceWatcher(connect(writer, password=password), settings.database, gate,
                           worker=f"{socket.gethostname()}:{os.getpid()}", member=lambda: group_member_id(app)).start()
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)

    @app.task
    async def dump_positions_on_sigusr2() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, log_consumer_positions, app)

    try:
        worker.execute_from_commandline()
    finally:
        watcher.stop()
        watcher.client.close()
        client.close()
