"""The embedded stack on one machine, supervised: the Tansu broker, the warehouse process (chDB's
owner, serving ClickHouse's HTTP interface) and N stream workers in one consumer group, which
write to the warehouse over HTTP as they would to a ClickHouse server. Also how other commands
find a running stack (the stack file).

Lifecycle promises: the broker starts first and stops last (its memory storage holds every
topic and committed offset); the warehouse starts before the workers (its port opens once the
schema is current) and stops after them; workers are stopped with SIGTERM so they finish their
batch; any child that dies is restarted; every child dies with the supervisor (PDEATHSIG), so
nothing is left behind, Ctrl-C included.

Privacy promises: each stack generates its own reader and writer passwords; the writer's goes
to the workers only; the stack file that tells other commands where the stack is and how to
read it is created owner-only (0600) from the start, and a new data directory is created 0700.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embedded.access import READER_USER, WRITER_USER, Credentials
from embedded.broker import EmbeddedBroker, start_broker
from embedded.config import StackConfig, SupportsStackConfig, as_config
from embedded.processes import alive, free_port, spawn, stop, wait_for_port
from producers.kafka import TopicSpec, ensure_topics
from schemas.errors import UnavailableError
from schemas.redaction import redact_url

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)


class StackNotRunning(UnavailableError):
    """No running embedded stack was found and no address was configured."""

    code = "stack_not_running"


@dataclass(frozen=True)
class StackInfo:
    """The stack file: where a running stack's broker and warehouse are, the reader's credentials
    (``reader_user``/``reader_password``; empty when reads go to a server) and the writer's (a
    worker started by hand joins the stack with them)."""

    brokers: str
    query_url: str = field(repr=False)   # a server DSN may hold a password
    pid: int
    reader_user: str = ""
    reader_password: str = field(default="", repr=False)
    writer_user: str = ""
    writer_password: str = field(default="", repr=False)
    warehouse_pid: int = 0                 # 0: no warehouse process (reads go to a server)
    worker_pids: tuple[int, ...] = ()      # 0 for a worker being restarted

    @classmethod
    def read(cls, path: Path) -> StackInfo | None:
        try:
            doc = json.loads(path.read_text())
            info = cls(doc["brokers"], doc["query_url"], int(doc["pid"]),
                       str(doc.get("reader_user") or ""), str(doc.get("reader_password") or ""),
                       str(doc.get("writer_user") or ""), str(doc.get("writer_password") or ""),
                       int(doc.get("warehouse_pid") or 0), tuple(int(pid) for pid in doc.get("worker_pids") or ()))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return info if alive(info.pid) else None  # else a stale file from a stack that died

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically with a file created owner-only (0600): it never exists, not
        even for a moment, with wider permissions."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)   # O_EXCL below: never reuse a file someone else created
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.__dict__, fh)
        tmp.replace(path)


@dataclass(frozen=True)
class Reader:
    """Where, and as whom, read-only clients connect: a URL (a DSN may carry user and password)
    and an optional password that overrides the URL's."""

    url: str = field(repr=False)
    password: str | None = field(default=None, repr=False)

    def connect(self, database: str | None = None) -> Client:
        """A clickhouse-connect client that cannot write (``sinks.clickhouse.connect(readonly=True)``)."""
        from sinks.clickhouse import connect

        return connect(self.url, database=database, password=self.password, readonly=True)


def resolve_reader(source: StackConfig | SupportsStackConfig) -> Reader:
    """How read-only commands reach the warehouse: ``RUNLENS_QUERY_URL`` if set, else the server
    warehouse DSN, else the running stack's read endpoint with the credentials from its stack
    file. ``RUNLENS_WAREHOUSE_PASSWORD`` overrides the password of a configured URL."""
    config = as_config(source)
    password = config.warehouse_password
    if config.query_url:
        return Reader(config.query_url, password)
    if config.warehouse_dsn is not None:
        return Reader(config.warehouse_dsn, password)
    info = StackInfo.read(config.stack_file)
    if info is None:
        raise StackNotRunning(
            f"no warehouse configured and no running stack in {config.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_QUERY_URL / RUNLENS_WAREHOUSE_DSN)")
    if info.reader_user:
        return Reader(Credentials(info.reader_user, info.reader_password).dsn(info.query_url))
    return Reader(info.query_url)


def resolve_brokers(source: StackConfig | SupportsStackConfig) -> str:
    """``RUNLENS_BROKERS`` if set, else the running stack's embedded broker."""
    config = as_config(source)
    if config.brokers:
        return config.brokers
    info = StackInfo.read(config.stack_file)
    if info is None:
        raise StackNotRunning(
            f"no broker configured and no running stack in {config.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_BROKERS)")
    return info.brokers


def resolve_writer(source: StackConfig | SupportsStackConfig) -> str:
    """The DSN a worker writes through: ``RUNLENS_WAREHOUSE_DSN`` if set, else the running stack's
    warehouse process as its writer (credentials from the stack file, which only its owner reads)."""
    config = as_config(source)
    if config.warehouse_dsn is not None:
        return config.warehouse_dsn
    info = StackInfo.read(config.stack_file)
    if info is None or not info.writer_user:
        raise StackNotRunning(
            f"no warehouse configured and no running stack in {config.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_WAREHOUSE_DSN)")
    return Credentials(info.writer_user, info.writer_password).dsn(info.query_url)


def resolve_query_url(source: StackConfig | SupportsStackConfig) -> str:
    """The reader's URL, credentials included (prefer ``resolve_reader``)."""
    return resolve_reader(source).url


def topic_specs(source: StackConfig | SupportsStackConfig) -> list[TopicSpec]:
    """The topics the pipeline uses: events, dead letters, alerts."""
    return list(as_config(source).topics)


class EmbeddedStack:
    """Broker, warehouse process and workers on this machine; a context manager. Configured by a
    ``StackConfig`` or by settings that make one (``settings.stack_config()``)."""

    config: StackConfig   # what the stack reads; follows ``settings``

    def __init__(self, source: StackConfig | SupportsStackConfig):
        self.settings = source
        self.data_dir = self.config.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.broker: EmbeddedBroker | None = None
        self.warehouse: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * self.config.workers
        self.warehouse_port = self.config.warehouse_port or free_port()
        self.worker_restarts = 0
        self.warehouse_restarts = 0
        self.reader = Credentials.given_or_generated(READER_USER, self.config.read_password)
        self.writer = Credentials.given_or_generated(WRITER_USER, self.config.write_password)

    @property
    def settings(self) -> StackConfig | SupportsStackConfig:
        """What the stack was configured from (the caller's settings, kept for the caller)."""
        return self._source

    @settings.setter
    def settings(self, source: StackConfig | SupportsStackConfig) -> None:
        """Reconfigure: a process started from now on gets the new settings."""
        self._source = source
        self.config = as_config(source)

    @property
    def worker(self) -> subprocess.Popen[bytes] | None:
        """The first worker's process (the only one with ``workers=1``)."""
        return self.workers[0] if self.workers else None

    @property
    def brokers(self) -> str:
        if self.config.brokers:
            return self.config.brokers
        assert self.broker is not None, "stack not started"
        return self.broker.bootstrap

    @property
    def query_url(self) -> str:
        """Where reads go, without credentials (see ``reader_dsn``)."""
        if self.config.warehouse_dsn is not None:
            return self.config.warehouse_dsn
        return f"http://127.0.0.1:{self.warehouse_port}"

    @property
    def reader_dsn(self) -> str:
        """``query_url`` with the reader's credentials, for clickhouse-connect (never print it)."""
        return self.reader.dsn(self.query_url) if self.config.uses_embedded_warehouse else self.query_url

    @property
    def writer_dsn(self) -> str:
        """Where the workers write, with the writer's credentials (never print it)."""
        return self.writer.dsn(self.query_url) if self.config.uses_embedded_warehouse else self.query_url

    def _env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.config.worker_env)
        env.update(RUNLENS_BROKERS=self.brokers, RUNLENS_DATA_DIR=str(self.data_dir), **extra)
        return env

    def worker_env(self) -> dict[str, str]:
        if not self.config.uses_embedded_warehouse:
            return self._env()
        dsn = self.query_url.replace("://", f"://{self.writer.user}@", 1)   # the password goes apart
        env = self._env(RUNLENS_WAREHOUSE_DSN=dsn, RUNLENS_WAREHOUSE_PASSWORD=self.writer.password)
        env.pop("RUNLENS_READ_PASSWORD", None)   # a worker writes; it never needs the reader's password
        return env

    def warehouse_env(self) -> dict[str, str]:
        return self._env(RUNLENS_WAREHOUSE_PORT=str(self.warehouse_port), RUNLENS_READ_PASSWORD=self.reader.password,
                         RUNLENS_WRITE_PASSWORD=self.writer.password)

    def start(self) -> EmbeddedStack:
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700, parents=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if StackInfo.read(self.config.stack_file) is not None:
            raise RuntimeError(f"a stack is already running from {self.data_dir}; stop it first "
                               "or use another RUNLENS_DATA_DIR")
        if not self.config.brokers:
            self.broker = start_broker(self.logs / "broker.log", self.config.broker_port,
                                       storage=self.config.broker_storage)
        ensure_topics(self.brokers, topic_specs(self.config))
        if self.config.uses_embedded_warehouse:
            self.start_warehouse()
        for index in range(len(self.workers)):
            self.start_worker(index)
        self.write_info()
        return self

    def write_info(self) -> None:
        """(Re)write the stack file: addresses, credentials and the processes running now."""
        embedded = self.config.uses_embedded_warehouse
        # a server's DSN is the user's own setting and is read from there, never from this file
        StackInfo(self.brokers, self.query_url if embedded else redact_url(self.query_url), os.getpid(),
                  self.reader.user if embedded else "", self.reader.password if embedded else "",
                  self.writer.user if embedded else "", self.writer.password if embedded else "",
                  self.warehouse.pid if self.warehouse is not None else 0,
                  tuple(proc.pid if proc is not None else 0 for proc in self.workers),
                  ).write(self.config.stack_file)

    def start_warehouse(self, timeout: float = 120.0) -> None:
        """Start the warehouse process and wait until it listens (its schema is then current)."""
        self.warehouse = spawn([sys.executable, "-m", "runlens", "warehouse"],
                               log_file=self.logs / "warehouse.log", env=self.warehouse_env())
        wait_for_port(self.warehouse_port, timeout=timeout, proc=self.warehouse)

    def stop_warehouse(self, sig: int | None = None) -> int | None:
        if self.warehouse is None:
            return None
        code = stop(self.warehouse, timeout=30, sig=sig or signal.SIGTERM)
        self.warehouse = None
        return code

    def worker_log(self, index: int = 0) -> Path:
        return self.logs / ("worker.log" if index == 0 else f"worker-{index + 1}.log")

    def start_worker(self, index: int = 0) -> None:
        self.workers[index] = spawn([sys.executable, "-m", "runlens", "worker"],
                                    log_file=self.worker_log(index), env=self.worker_env())

    def stop_worker(self, sig: int | None = None, index: int = 0) -> int | None:
        proc = self.workers[index]
        if proc is None:
            return None
        code = stop(proc, timeout=30, sig=sig or signal.SIGTERM)
        self.workers[index] = None
        return code

    def supervise(self) -> None:
        """Restart the warehouse or any worker that died (with a short pause, growing with the
        restarts, so a crash cannot spin)."""
        restarts = self.warehouse_restarts + self.worker_restarts
        self._restart_dead()
        if self.warehouse_restarts + self.worker_restarts != restarts:
            self.write_info()

    def _restart_dead(self) -> None:
        if self.warehouse is not None and self.warehouse.poll() is not None:
            self.warehouse_restarts += 1
            log.warning("warehouse exited with code %s; restarting (restart #%d)", self.warehouse.returncode,
                        self.warehouse_restarts)
            time.sleep(min(5.0, 0.5 * self.warehouse_restarts))
            self.start_warehouse()
        for index, proc in enumerate(self.workers):
            if proc is not None and proc.poll() is not None:
                self.worker_restarts += 1
                log.warning("worker %d exited with code %s; restarting (restart #%d)", index + 1, proc.returncode,
                            self.worker_restarts)
                time.sleep(min(5.0, 0.5 * self.worker_restarts))
                self.start_worker(index)

    def stop(self) -> None:
        try:
            for index in range(len(self.workers)):
                self.stop_worker(index=index)
            self.stop_warehouse()
        finally:
            if self.broker is not None:
                self.broker.stop()
                self.broker = None
            info = StackInfo.read(self.config.stack_file)
            if info is not None and info.pid == os.getpid():
                self.config.stack_file.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
