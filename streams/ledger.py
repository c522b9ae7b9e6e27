"""What the worker remembers about each events-topic partition it owns. Pure, no I/O.

The ledger decides, for every event of a batch, whether it is *new* (contributes to the
aggregates) and which queue-wait sample it completes, so that the warehouse's aggregate
views can simply add up new rows:

- Events at or below the partition's **high-water position** (the highest (offset, index)
  already in the warehouse) are skipped: they were stored before a crash or rebalance and are being
  delivered again. Exact, however the batch is cut.
- An ``event_id`` seen recently on the partition marks a **duplicate** (``is_new`` = 0):
  stored, but never counted. "Recently" is the last ``recent_capacity`` events of the
  partition, which is the documented deduplication horizon for aggregates; ``runs`` and
  ``steps`` are duplicate-proof without it.
- Queue wait (``run.started.ts - run.queued.ts``) needs two events that may arrive in
  either order: the second one to arrive carries the sample. Half-seen runs are kept in
  ``open_runs`` (bounded; the oldest are dropped past ``max_open_runs``).

The state is rebuilt from the warehouse when a partition is (re)assigned, see
``sinks.clickhouse.Warehouse.load_ledger``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import Event


@dataclass(frozen=True, slots=True)
class Annotation:
    """What the ledger decided about one event."""

    is_new: bool
    queue_wait_ms: int | None = None
    queue_wait_at: datetime | None = None   # the run's start time: the sample's bucket


@dataclass
class OpenRun:
    queued_at: datetime | None = None
    started_at: datetime | None = None


class RecentKeys:
    """A bounded, insertion-ordered set: the oldest keys fall out first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        self._keys[key] = None
        if len(self._keys) > self.capacity:
            self._keys.popitem(last=False)


@dataclass
class PartitionLedger:
    partition: int
    high_water: tuple[int, int] = (-1, -1)   # (offset, index in record) of the last stored event
    recent_capacity: int = 200_000
    max_open_runs: int = 500_000
    recent: RecentKeys = field(init=False)
    open_runs: OrderedDict[str, OpenRun] = field(default_factory=OrderedDict)
    skipped_redelivered: int = 0
    duplicates: int = 0

    def __post_init__(self) -> None:
        self.recent = RecentKeys(self.recent_capacity)

    def annotate(self, event: Event, offset: int, index: int = 0) -> Annotation | None:
        """Decide about the event at (``offset``, ``index``); None means: already stored, skip it."""
        position = (offset, index)
        if position <= self.high_water:
            self.skipped_redelivered += 1
            return None
        self.high_water = position
        if event.event_id in self.recent:
            self.duplicates += 1
            return Annotation(is_new=False)
        self.recent.add(event.event_id)
        if event.type == "run.queued":
            return self._pair(event.run_id, queued_at=event.ts)
        if event.type == "run.started":
            return self._pair(event.run_id, started_at=event.ts)
        return Annotation(is_new=True)

    def _pair(self, run_id: str, *, queued_at: datetime | None = None,
              started_at: datetime | None = None) -> Annotation:
        run = self.open_runs.pop(run_id, None)
        if run is None:
            self.open_runs[run_id] = OpenRun(queued_at, started_at)
            if len(self.open_runs) > self.max_open_runs:
                self.open_runs.popitem(last=False)
            return Annotation(is_new=True)
        queued = queued_at or run.queued_at
        started = started_at or run.started_at
        if queued is None or started is None:  # the same half seen twice under two event ids
            self.open_runs[run_id] = OpenRun(queued, started)
            return Annotation(is_new=True)
        wait_ms = round((started - queued).total_seconds() * 1000)
        return Annotation(is_new=True, queue_wait_ms=wait_ms, queue_wait_at=started)

    def remember_open_run(self, run_id: str, queued_at: datetime | None, started_at: datetime | None) -> None:
        """Seed a half-seen run from the warehouse when the partition is loaded."""
        self.open_runs[run_id] = OpenRun(queued_at, started_at)
