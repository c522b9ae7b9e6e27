"""The bench runner: plan in, phases run one after the other, result dict out."""

from __future__ import annotations

import gc
import os
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from runlens.bench.common import PRODUCERS, Plan, encoded, live_events, machine_facts
from runlens.bench.latency import Latency
from runlens.bench.pipeline import Pipeline
from runlens.bench.queries import Queries
from runlens.bench.yardsticks import Yardsticks


class Bench(Yardsticks, Pipeline, Latency, Queries):
    """Runs the phases of a ``Plan`` (see the package docstring) and collects the result."""

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
