"""What the worker remembers about each events-topic partition it owns. Pure, no I/O.

The ledger decides, for every event of a batch, whether it is *new* (contributes to the
aggregates) and which queue-wait sample it completes, so that the warehouse's aggregate
views can simply add up new rows:

- Events at or below the partition's **high-water position** (the (offset, index) stored
  last) whose event id was stored recently are skipped: they were stored before a crash or
  rebalance and are being delivered again. Exact, however the batch is cut, as long as a
  redelivery is shorter than the horizon below (a batch holds at most ``batch_max_records``
  records of at most 500 events). An event at such a position with an id *not* stored there
  means the topic was re-created (offsets start again at 0 after a memory broker restarts):
  it is stored, not skipped.
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

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime

from schemas.events import Event

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Annotation:
    """What the ledger decided about one event."""

    is_new: bool
    queue_wait_ms: int | None = None
    queue_wait_at: datetime | None = None   # the run's start time: the sample's bucket


_NEW = Annotation(is_new=True)
_DUPLICATE = Annotation(is_new=False)


@dataclass
class OpenRun:
    queued_at: datetime | None = None
    started_at: datetime | None = None


class RecentKeys:
    """A bounded, insertion-ordered set: the oldest keys fall out first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._keys: set[str] = set()
        self._order: deque[str] = deque()

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        if key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        if len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())


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
    topic_resets: int = 0

    def __post_init__(self) -> None:
        self.recent = RecentKeys(self.recent_capacity)

    def annotate(self, event: Event, offset: int, index: int = 0) -> Annotation | None:
        """Decide about the event at (``offset``, ``index``); None means: already stored, skip it."""
        position = (offset, index)
        recent = self.recent
        if position <= self.high_water:
            if event.event_id in recent:
                self.skipped_redelivered += 1
                return None
            # A position already used, by another event: the topic was re-created (a memory
            # broker restarted) and offsets started again. Store it; count from here on.
            self.topic_resets += 1
            if self.topic_resets == 1:
                log.warning("partition %d: event %s at offset %d is not the one stored there before; "
                            "the topic was re-created, its events are stored as new", self.partition,
                            event.event_id, offset)
        self.high_water = position
        if event.event_id in recent:
            self.duplicates += 1
            return _DUPLICATE
        recent.add(event.event_id)
        kind = event.type
        if kind == "run.queued":
            return self._pair(event.run_id, queued_at=event.ts)
        if kind == "run.started":
            return self._pair(event.run_id, started_at=event.ts)
        return _NEW

    def _pair(self, run_id: str, *, queued_at: datetime | None = None,
              started_at: datetime | None = None) -> Annotation:
        run = self.open_runs.pop(run_id, None)
        if run is None:
            self.open_runs[run_id] = OpenRun(queued_at, started_at)
            if len(self.open_runs) > self.max_open_runs:
                self.open_runs.popitem(last=False)
            return _NEW
        queued = queued_at or run.queued_at
        started = started_at or run.started_at
        if queued is None or started is None:  # the same half seen twice under two event ids
            self.open_runs[run_id] = OpenRun(queued, started)
            return _NEW
        wait_ms = round((started - queued).total_seconds() * 1000)
        return Annotation(is_new=True, queue_wait_ms=wait_ms, queue_wait_at=started)

    def remember_open_run(self, run_id: str, queued_at: datetime | None, started_at: datetime | None) -> None:
        """Seed a half-seen run from the warehouse when the partition is loaded."""
        self.open_runs[run_id] = OpenRun(queued_at, started_at)
