"""Composition root of the worker process: the warehouse client and the Faust worker.

Run as ``runlens worker`` (``runlens up`` starts N of them in one consumer group). It writes to
the warehouse through clickhouse-connect's HTTP client, to a ClickHouse server or to the
embedded warehouse process alike, and holds no data directory of its own beyond Faust's.
"""

from __future__ import annotations

import asyncio
import gc
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


GC_YOUNG_THRESHOLD = 700
GC_FULL_EVERY = 100
"""The cyclic garbage collector's thresholds in the worker: a young collection every 700 container
allocations (CPython's default), a full one after ``GC_FULL_EVERY`` collections of the middle
generation (CPython's default: 10). A batch allocates a few containers per event and keeps many
of them until its insert, so with the defaults a full collection, which walks the whole heap
(ledgers of up to 200,000 keys per partition, the detectors' state, every batch in flight), ran
every 20,000 events or so. Events, rows and batches are freed by reference counting, but what a
batch held in reference cycles outlives the young collections and waits for a full one, so the
rarer full collections are, the more memory waits. Measured (quick bench, one worker, same
machine): default 35 us of worker CPU per event, worker RSS 570-600 MiB after the max-rate runs;
1000: 30 us, 960-1,020 MiB (and growing); 100: 31 us, 640-690 MiB."""


def tune_gc() -> None:
    """Move everything loaded so far (modules, the app) out of the collector's sight
    (``gc.freeze``: it is never garbage) and make full collections rare (``GC_FULL_EVERY``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, GC_FULL_EVERY)


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; exits non-zero on a fatal error. Never migrates: waits until the
    schema has the version this code needs (applied by the warehouse process or `runlens migrate`)
    before it consumes anything, and pauses its inserts while `runlens migrate` holds the
    migration fence (``sinks.fence``, watched by ``streams.fence.FenceWatcher``). SIGUSR1 logs
    every task's stack (Faust's), SIGUSR2 where the consumer stands per partition and, when
    started with ``PYTHONTRACEMALLOC=1``, the lines of code holding the most memory
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
    tune_gc()

    @app.task
    async def dump_positions_on_sigusr2() -> None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, log_consumer_positions, app)

    try:
        worker.execute_from_commandline()
    finally:
        watcher.stop()
        watcher.client.close()
        client.close()
