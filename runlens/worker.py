"""Composition root of the worker process: warehouse, read endpoint, Faust worker.

Run as ``runlens worker``. With an embedded (chDB) warehouse this process owns the data
directory and serves reads for every other process on the read endpoint.
"""

from __future__ import annotations

import logging
from dataclasses import fields

import faust

from embedded.read_endpoint import ReadEndpoint
from embedded.read_policy import READER_USER, Credentials, ReadLimits
from embedded.stack import resolve_brokers, topic_specs
from producers.kafka import ensure_topics
from runlens.settings import Settings
from sinks.clickhouse import Faults, Warehouse, connect, migrate
from streams.app import create_app
from streams.config import WorkerConfig

log = logging.getLogger(__name__)


def worker_config(settings: Settings) -> WorkerConfig:
    """What the Faust worker needs of ``settings``: its fields bear the same names there."""
    return WorkerConfig(**{field.name: getattr(settings, field.name) for field in fields(WorkerConfig)})


def run_worker(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT. Applies migrations first; exits non-zero on a fatal error."""
    brokers = resolve_brokers(settings)
    ensure_topics(brokers, topic_specs(settings))
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    client = connect(settings.worker_dsn, password=password)
    migrate(client, settings.database)
    warehouse = Warehouse(client, settings.database, dedup=settings.insert_dedup,
                          faults=Faults(settings.fault_lose_reply_every, settings.fault_outage_file))
    endpoint = None
    if settings.uses_embedded_warehouse:
        if settings.read_password is None:
            log.warning("RUNLENS_READ_PASSWORD is not set: the read endpoint accepts no one "
                        "(`runlens up` sets it for its worker)")
        credentials = Credentials(READER_USER, settings.read_password.get_secret_value()) \
            if settings.read_password else Credentials.generate()
        endpoint = ReadEndpoint(str(settings.embedded_warehouse_path), database=settings.database,
                                credentials=credentials, limits=ReadLimits.from_settings(settings),
                                port=settings.read_port)
        log.info("read endpoint on %s", endpoint.start())
    app = create_app(worker_config(settings), brokers, warehouse)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    try:
        worker.execute_from_commandline()
    finally:
        if endpoint is not None:
            endpoint.stop()
        client.close()
