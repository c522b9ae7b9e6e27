"""The embedded stack on one machine: Tansu broker + worker process (Faust + chDB owner + read
endpoint), supervised. Also how other commands find a running stack (the stack file).

Lifecycle promises: the broker starts first and stops last (its memory storage holds every
topic and committed offset); the worker is stopped with SIGTERM so it finishes its batch,
and restarted if it dies; every child dies with the supervisor (PDEATHSIG), so nothing is
left behind, Ctrl-C included.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from embedded.broker import EmbeddedBroker, start_broker
from embedded.processes import free_port, spawn, stop, wait_for_port
from producers.kafka import TopicSpec, ensure_topics
from runlens.settings import Settings

log = logging.getLogger(__name__)


class StackNotRunning(Exception):
    """No running embedded stack was found and no address was configured."""


@dataclass(frozen=True)
class StackInfo:
    brokers: str
    query_url: str
    pid: int

    @classmethod
    def read(cls, path: Path) -> "StackInfo | None":
        try:
            doc = json.loads(path.read_text())
            info = cls(doc["brokers"], doc["query_url"], int(doc["pid"]))
        except (OSError, ValueError, KeyError):
            return None
        try:
            os.kill(info.pid, 0)
        except ProcessLookupError:
            return None  # a stale file from a stack that died
        except PermissionError:
            pass
        return info

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.__dict__))
        tmp.replace(path)


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
    if settings.query_url:
        return settings.query_url
    if not settings.uses_embedded_warehouse:
        return settings.worker_dsn
    info = StackInfo.read(settings.stack_file)
    if info is None:
        raise StackNotRunning(
            f"no warehouse configured and no running stack in {settings.data_dir} "
            "(start one with `runlens up`, or set RUNLENS_QUERY_URL / RUNLENS_WAREHOUSE_DSN)")
    return info.query_url


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

    @property
    def brokers(self) -> str:
        if self.settings.brokers:
            return self.settings.brokers
        assert self.broker is not None, "stack not started"
        return self.broker.bootstrap

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.read_port}" if self.settings.uses_embedded_warehouse \
            else self.settings.worker_dsn

    def worker_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.to_env())
        env.update(RUNLENS_BROKERS=self.brokers, RUNLENS_DATA_DIR=str(self.data_dir),
                   RUNLENS_READ_PORT=str(self.read_port))
        return env

    def start(self) -> "EmbeddedStack":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if StackInfo.read(self.settings.stack_file) is not None:
            raise RuntimeError(f"a stack is already running from {self.data_dir}; stop it first "
                               "or use another RUNLENS_DATA_DIR")
        if not self.settings.brokers:
            self.broker = start_broker(self.logs / "broker.log", self.settings.broker_port,
                                       storage=self.settings.broker_storage)
        ensure_topics(self.brokers, topic_specs(self.settings))
        self.start_worker()
        StackInfo(self.brokers, self.query_url, os.getpid()).write(self.settings.stack_file)
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

    def __enter__(self) -> "EmbeddedStack":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
