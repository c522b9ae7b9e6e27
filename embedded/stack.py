"""The embedded stack on one machine: Tansu broker + worker process (Faust + chDB owner + read
endpoint), supervised. Also how other commands find a running stack (the stack file).

Lifecycle promises: the broker starts first and stops last (its memory storage holds every
topic and committed offset); the worker is stopped with SIGTERM so it finishes its batch,
and restarted if it dies; every child dies with the supervisor (PDEATHSIG), so nothing is
left behind, Ctrl-C included.

Privacy promises: each stack generates its own read-endpoint password and hands it to its
worker; the stack file that tells other commands where the stack is and how to read it is
created owner-only (0600) from the start, and a new data directory is created 0700.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from embedded.broker import EmbeddedBroker, start_broker
from embedded.processes import free_port, spawn, stop, wait_for_port
from embedded.read_policy import READER_USER, Credentials
from producers.kafka import TopicSpec, ensure_topics
from runlens.settings import Settings, redact_url
from schemas.errors import UnavailableError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

log = logging.getLogger(__name__)


class StackNotRunning(UnavailableError):
    """No running embedded stack was found and no address was configured."""

    code = "stack_not_running"


@dataclass(frozen=True)
class StackInfo:
    """The stack file: where a running stack's broker and read endpoint are, and the reader's
    credentials (``reader_user``/``reader_password``; empty when reads go to a server)."""

    brokers: str
    query_url: str = field(repr=False)   # a server DSN may hold a password
    pid: int
    reader_user: str = ""
    reader_password: str = field(default="", repr=False)

    @classmethod
    def read(cls, path: Path) -> StackInfo | None:
        try:
            doc = json.loads(path.read_text())
            info = cls(doc["brokers"], doc["query_url"], int(doc["pid"]),
                       str(doc.get("reader_user") or ""), str(doc.get("reader_password") or ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None  # a stale file from a stack that died
        except PermissionError:
            pass
        return info

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


def resolve_reader(settings: Settings) -> Reader:
    """How read-only commands reach the warehouse: ``RUNLENS_QUERY_URL`` if set, else the server
    warehouse DSN, else the running stack's read endpoint with the credentials from its stack
    file. ``RUNLENS_WAREHOUSE_PASSWORD`` overrides the password of a configured URL."""
    password = settings.warehouse_password.get_secret_value() if settings.warehouse_password else None
    if settings.query_url:
        return Reader(settings.query_url, password)
    if not settings.uses_embedded_warehouse:
        return Reader(settings.worker_dsn, password)
    info = StackInfo.read(settings.stack_file)
    if info is None:
        raise StackNotRunning(
            f"no warehouse configured and no running stack in {settings.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_QUERY_URL / RUNLENS_WAREHOUSE_DSN)")
    if info.reader_user:
        return Reader(Credentials(info.reader_user, info.reader_password).dsn(info.query_url))
    return Reader(info.query_url)


def resolve_brokers(settings: Settings) -> str:
    if settings.brokers:
        return settings.brokers
    info = StackInfo.read(settings.stack_file)
    if info is None:
        raise StackNotRunning(
            f"no broker configured and no running stack in {settings.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_BROKERS)")
    return info.brokers


def resolve_query_url(settings: Settings) -> str:
    """The reader's URL, credentials included (prefer ``resolve_reader``)."""
    return resolve_reader(settings).url


def topic_specs(settings: Settings) -> list[TopicSpec]:
    return [
        TopicSpec(settings.events_topic, settings.partitions, settings.replication_factor),
        TopicSpec(settings.dead_letter_topic, 1, settings.replication_factor),
        TopicSpec(settings.alerts_topic, 1, settings.replication_factor),
    ]


class EmbeddedStack:
    """Broker, worker and warehouse on this machine; a context manager."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.broker: EmbeddedBroker | None = None
        self.worker: subprocess.Popen | None = None
        self.read_port = settings.read_port or free_port()
        self.worker_restarts = 0
        password = settings.read_password.get_secret_value() if settings.read_password else None
        self.reader = Credentials(READER_USER, password) if password else Credentials.generate()

    @property
    def brokers(self) -> str:
        if self.settings.brokers:
            return self.settings.brokers
        assert self.broker is not None, "stack not started"
        return self.broker.bootstrap

    @property
    def query_url(self) -> str:
        """Where reads go, without the reader's credentials (see ``reader_dsn``)."""
        return f"http://127.0.0.1:{self.read_port}" if self.settings.uses_embedded_warehouse \
            else self.settings.worker_dsn

    @property
    def reader_dsn(self) -> str:
        """``query_url`` with the reader's credentials, for clickhouse-connect (never print it)."""
        return self.reader.dsn(self.query_url) if self.settings.uses_embedded_warehouse else self.query_url

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(RUNLENS_BROKERS=self.brokers, RUNLENS_DATA_DIR=str(self.data_dir),
                   RUNLENS_READ_PORT=str(self.read_port), RUNLENS_READ_PASSWORD=self.reader.password)
        return env

    def start(self) -> EmbeddedStack:
        if not self.data_dir.exists():
            self.data_dir.mkdir(mode=0o700, parents=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if StackInfo.read(self.settings.stack_file) is not None:
            raise RuntimeError(f"a stack is already running from {self.data_dir}; stop it first "
                               "or use another RUNLENS_DATA_DIR")
        if not self.settings.brokers:
            self.broker = start_broker(self.logs / "broker.log", self.settings.broker_port,
                                       storage=self.settings.broker_storage)
        ensure_topics(self.brokers, topic_specs(self.settings))
        self.start_worker()
        embedded = self.settings.uses_embedded_warehouse
        # a server's DSN is the user's own setting and is read from there, never from this file
        StackInfo(self.brokers, self.query_url if embedded else redact_url(self.query_url), os.getpid(),
                  self.reader.user if embedded else "",
                  self.reader.password if embedded else "").write(self.settings.stack_file)
        return self

    def start_worker(self, timeout: float = 90.0) -> None:
        self.worker = spawn([sys.executable, "-m", "runlens", "worker"],
                            log_file=self.logs / "worker.log", env=self.worker_env())
        if self.settings.uses_embedded_warehouse:
            wait_for_port(self.read_port, timeout=timeout, proc=self.worker)

    def stop_worker(self, sig: int | None = None) -> int | None:
        if self.worker is None:
            return None
        import signal

        code = stop(self.worker, timeout=30, sig=sig or signal.SIGTERM)
        self.worker = None
        return code

    def check_worker(self) -> None:
        """Restart the worker if it died (with a short pause so a crash cannot spin)."""
        if self.worker is not None and self.worker.poll() is not None:
            code = self.worker.returncode
            self.worker_restarts += 1
            log.warning("worker exited with code %s; restarting (restart #%d)", code, self.worker_restarts)
            time.sleep(min(5.0, 0.5 * self.worker_restarts))
            self.start_worker()

    def stop(self) -> None:
        try:
            self.stop_worker()
        finally:
            if self.broker is not None:
                self.broker.stop()
                self.broker = None
            info = StackInfo.read(self.settings.stack_file)
            if info is not None and info.pid == os.getpid():
                self.settings.stack_file.unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
