"""The bench runner: plan in, phases run one after the other, result dict out."""

from __future__ import annotations

import gc
import os
import resource
import shutil
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runlens.bench.common import PRODUCERS, Plan, encoded, live_events, machine_facts
from runlens.bench.latency import Latency
from runlens.bench.peer_quix import peer_comparison
from runlens.bench.pipeline import Pipeline
from runlens.bench.queries import Queries
from runlens.bench.yardsticks import Yardsticks
from runlens.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress


class Bench(Yardsticks, Pipeline, Latency, Queries):
    """Runs the phases of a ``Plan`` (see the package docstring) and collects the result."""

    def __init__(self, plan: Plan, base_settings: Settings, progress: Progress, console: Console) -> None:
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
        self.rss_samples = []
        self.t_start = time.monotonic()

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
        steps = 4 + len(PRODUCERS) + (1 if self.plan.soak_s else 0) + len(self.plan.rates) + 2 * len(self.plan.history)
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
        data: dict[str, list[Any]] = {"keys": keys, "values": values}
        del keys, values
        self.phase("baselines", lambda: self.baselines(data["keys"], data["values"]))
        self.advance()
        self.phase("pipeline", lambda: self.pipeline(data))
        # runlens against the peer yardstick P1 (measured in the baselines phase): pipeline ÷ P1
        self.result["peer"] = peer_comparison(self.result.get("pipeline", {}).get("throughput"),
                                              self.result.get("baselines", {}).get("P1"))
        # the events once more, on a stack with the other number of workers (2 when the pipeline ran 1)
        self.phase("workers", lambda: self.workers_side_by_side(data))
        for events in data.values():
            events.clear()
        data.clear()
        gc.collect()
        if self.plan.history:
            self.phase("queries", self.queries)
        self.result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.result["seconds"] = round(time.monotonic() - self.t_start, 1)
        self.result["bench_process_rss_mb_peak"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        return self.result
