"""What every phase of the bench shares: the state ``Bench`` holds, its progress plumbing and the
helpers that reach a phase's embedded stack (lag, producers, stored counts, worker memory).

The phases (``yardsticks``, ``pipeline``, ``latency``, ``queries``) are parts of ``Bench`` built on
``BenchBase``; ``runner.Bench`` fills the state in."""

from __future__ import annotations

import ctypes
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from embedded.processes import rss_mb
from runlens.bench.common import Plan, proc_cpu_seconds, rounded
from runlens.bench.probes import EmitterSink, PlainSink
from runlens.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from embedded.stack import EmbeddedStack


class BenchSink(Protocol):
    """A producer path of the bench (``EmitterSink``, ``PlainSink`` or ``producers.simulate.EventSink``)."""

    def send(self, run_id: str, payload: bytes) -> None: ...

    def flush(self) -> None: ...


def release_freed_memory() -> float | None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc ``malloc_trim``:
    what a phase freed stays mapped otherwise, and the next phase's peak adds to it); the bench
    process's RSS in MiB afterwards."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):   # not glibc
        pass
    return rounded(rss_mb(os.getpid()))


class BenchBase:
    """The bench's state and plumbing, shared by its phases."""

    plan: Plan
    base: Settings
    progress: Progress
    console: Console
    folder: Path
    scratch: Path
    run_id: str
    result: dict[str, Any]
    overall: TaskID | None
    detail: TaskID | None
    rss_samples: list[tuple[str, float, float]]   # (phase, seconds since start, MiB)
    t_start: float

    # ---- plumbing

    def settings_for(self, phase: str) -> Settings:
        update: dict[str, Any] = {
            "data_dir": self.scratch / phase, "topic_prefix": f"bench-{self.run_id}-{phase}",
            "database": f"bench_{phase}", "brokers": None, "warehouse_dsn": None, "query_url": None,
            "warehouse_password": None, "warehouse_port": 0, "read_password": None, "write_password": None,
            "broker_port": 0, "log_level": "WARNING", "alert_webhook_url": None,
        }
        # test hooks of the reliability suite, where the settings have them: always off here
        fields = type(self.base).model_fields
        hooks = (("fault_lose_reply_every", 0), ("fault_drop_batch_every", 0), ("fault_outage_file", None),
                 ("insert_dedup", True))
        for name, off in hooks:
            if name in fields:
                update[name] = off
        return self.base.model_copy(update=update)

    def _task(self, task: TaskID | None) -> TaskID:
        if task is None:
            raise RuntimeError("the bench's progress tasks exist only while it runs")
        return task

    def step(self, text: str) -> None:
        self.progress.update(self._task(self.overall), description=text)
        self.progress.update(self._task(self.detail), description="", completed=0, total=None)

    def advance(self) -> None:
        self.progress.advance(self._task(self.overall))

    def show(self, text: str, completed: float | None = None, total: float | None = None) -> None:
        kwargs: dict[str, Any] = {"description": text}
        if total is not None:
            kwargs["total"] = total
        if completed is not None:
            kwargs["completed"] = completed
        self.progress.update(self._task(self.detail), **kwargs)

    def phase(self, name: str, body: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            body()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported; the others still run
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
            entry: dict[str, Any] = {"phase": name, "error": message}
            for process in ("worker", "warehouse"):
                log = self.scratch / name / "logs" / f"{process}.log"
                if log.is_file():  # the scratch folder goes away: keep what the process said
                    entry[f"{process}_log_tail"] = log.read_text(errors="replace").splitlines()[-30:]
            self.result["errors"].append(entry)
            self.console.print(f"bench: phase {name} failed: {message}", markup=False, highlight=False)
        finally:
            self.result.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)
            self.result.setdefault("bench_rss_mb_after_phase", {})[name] = release_freed_memory()

    # ---- a phase's stack

    @staticmethod
    def settings_of(stack: EmbeddedStack) -> Settings:
        """The runlens settings ``stack`` was started with (the bench starts every stack from them)."""
        settings = stack.settings
        if not isinstance(settings, Settings):
            raise TypeError(f"the bench's stacks start from runlens Settings, not {type(settings).__name__}")
        return settings

    @staticmethod
    def worker_pid(stack: EmbeddedStack) -> int:
        if stack.worker is None:
            raise RuntimeError("the stack's worker is not running")
        return stack.worker.pid

    @staticmethod
    def worker_pids(stack: EmbeddedStack) -> list[int]:
        """Every running worker's pid, in the stack's order."""
        return [proc.pid for proc in stack.workers if proc is not None]

    @staticmethod
    def warehouse_pid(stack: EmbeddedStack) -> int | None:
        return stack.warehouse.pid if stack.warehouse is not None else None

    @staticmethod
    def cpu_of(pids: list[int]) -> float | None:
        """CPU seconds of all ``pids`` together; None if one of them is gone (or none is given)."""
        total = 0.0
        for pid in pids:
            value = proc_cpu_seconds(pid)
            if value is None:
                return None
            total += value
        return total if pids else None

    def _wait_lag_zero(self, stack: EmbeddedStack, timeout: float, total: int | None = None, label: str = "",
                       on_sample: Callable[[], None] | None = None, interval: float = 0.25) -> tuple[int, float]:
        """Poll the worker group's committed lag until 0. Returns (lag, monotonic time seen)."""
        from confluent_kafka import KafkaException

        from producers.kafka import consumer_lag

        s = self.settings_of(stack)
        deadline = time.monotonic() + timeout
        lag = -1
        while True:
            stack.supervise()
            try:
                lag = consumer_lag(stack.brokers, s.consumer_group, [s.events_topic])
            except KafkaException:   # a loaded broker did not answer the probe in time: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(interval)
                continue
            seen = time.monotonic()
            if on_sample is not None:
                on_sample()
            if total is not None:
                self.show(f"{label}: lag {lag:,} records", max(0, total - lag), total)
            if lag == 0 or seen > deadline:
                return lag, seen
            time.sleep(interval)

    def _sink(self, stack: EmbeddedStack, mode: str) -> BenchSink:
        """How runlens producers send. ``emitter``: multi-event records with a linger, as
        ``producers.emitter.RunEmitter`` (the library engines embed) sends. ``single``: one record
        per event, key = run id, as ``RunEmitter(one_record_per_event=True)`` sends. ``sink``:
        ``producers.simulate.EventSink``, the path of ``runlens publish`` / ``simulate`` / ``demo``."""
        from producers.kafka import CheckedProducer

        # the queue bounded to 256 MiB (librdkafka's default is 1 GiB): the bench process holds the
        # events once, and a producer running ahead of the broker must not hold them again
        producer = CheckedProducer(stack.brokers, **{"queue.buffering.max.kbytes": 256 * 1024})
        topic = self.settings_of(stack).events_topic
        if mode == "emitter":
            return EmitterSink(producer, topic)
        if mode == "single":
            return PlainSink(producer, topic)
        from producers.simulate import EventSink

        return EventSink(producer, topic)

    def _count(self, stack: EmbeddedStack, table: str) -> int:
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn, database=self.settings_of(stack).database)
        try:
            count: int = client.query(f"SELECT count() FROM {table}").result_rows[0][0]
            return count
        finally:
            client.close()

    def _stored(self, stack: EmbeddedStack) -> int:
        return self._count(stack, "events")

    def _rejected(self, stack: EmbeddedStack) -> int:
        return self._count(stack, "dead_letters")

    def _check_stored(self, stack: EmbeddedStack, run: dict[str, Any], expected: int,
                      expected_rejected: int = 0) -> None:
        """Every event sent so far is in ``events`` and exactly the bad lines sent were
        dead-lettered: the bench sent what it meant to send, so the rate is a rate of stored events."""
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn, database=self.settings_of(stack).database)
        try:
            deadline = time.monotonic() + 30
            while True:
                stored = client.query("SELECT count() FROM events").result_rows[0][0]
                rejected = client.query("SELECT count() FROM dead_letters").result_rows[0][0]
                if (stored >= expected and rejected >= expected_rejected) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            client.close()
        run["events_stored_total"] = stored
        run["dead_letters_total"] = rejected
        if stored != expected or rejected != expected_rejected:
            raise RuntimeError(f"expected {expected:,} stored events and {expected_rejected:,} dead letters, found "
                               f"{stored:,} stored and {rejected:,} dead letters")

    def _sample_rss(self, stack: EmbeddedStack, phase: str) -> None:
        if stack.worker is not None:
            value = rss_mb(stack.worker.pid)
            if value is not None:
                self.rss_samples.append((phase, time.monotonic() - self.t_start, value))
