"""What the worker remembers about each events-topic partition it owns. Pure, no I/O.

The ledger decides, for every event of a batch, whether it is *new* (contributes to the
aggregates) and which queue-wait sample it completes, so that the warehouse's aggregate
views can simply add up new rows:

Ids are only unique within an account (two tenants may use the same ``event_id`` or
``run_id``), so every id below is the pair (``account_id``, id), as in the warehouse's keys.

- Events at or below the partition's **high-water position** (the (offset, index) stored
  last) whose (account, event id) was stored recently are skipped: they were stored before a crash or
  rebalance and are being delivered again. Exact, however the batch is cut, as long as a
  redelivery is shorter than the horizon below (a batch holds at most ``batch_max_records``
  records of at most 500 events). An event at such a position with an id *not* stored there
  means the topic was re-created (offsets start again at 0 after a memory broker restarts):
  it is stored, not skipped.
- An (``account_id``, ``event_id``) seen recently on the partition marks a **duplicate** (``is_new`` = 0):
  stored, but never counted. "Recently" is the last ``recent_capacity`` events of the
  partition, which is the documented deduplication horizon for aggregates; ``runs`` and
  ``steps`` are duplicate-proof without it.
- Queue wait (``run.started.ts - run.queued.ts``) needs two events that may arrive in
  either order: the second one to arrive carries the sample; both halves must belong to the
  same (``account_id``, ``run_id``). Half-seen runs are kept in ``open_runs`` (bounded; the
  oldest are dropped past ``max_open_runs``).

The state is rebuilt from the warehouse when a partition is (re)assigned:
``sinks.clickhouse.Warehouse.load_ledger`` reads it as a ``sinks.ledger_state.LedgerState``,
``PartitionLedger.from_state`` turns that into a ledger.
"""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict, deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from schemas.events import Event
from schemas.fast import FastEvent
from sinks.ledger_state import Annotation, LedgerState
from sinks.rows import SourcedEvent
from streams.signals import SIGNAL_TYPES, RunSignal, signal_of

__all__ = ["Annotated", "Annotation", "Key", "OpenRun", "PartitionLedger", "RecentKeys", "annotate_group", "key_of"]

log = logging.getLogger(__name__)

_NEW = Annotation(is_new=True)
_DUPLICATE = Annotation(is_new=False)


@dataclass
class OpenRun:
    queued_at: datetime | None = None
    started_at: datetime | None = None


Key = tuple[str, str]
"""(account_id, id): an event or run id is only unique within its account."""


def key_of(account_id: str, id_: str) -> Key:
    """The ledger's key of an id; the account string is interned, so the many keys of one
    account share it (the horizon holds 200,000 keys per partition)."""
    return (sys.intern(account_id), id_)


class RecentKeys:
    """A bounded, insertion-ordered set: the oldest keys fall out first."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._keys: set[Hashable] = set()
        self._order: deque[Hashable] = deque()

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: Hashable) -> bool:
        """Add ``key`` (the oldest key leaves once ``capacity`` are held); False, and nothing
        changes, when it is held already."""
        keys = self._keys
        size = len(keys)
        keys.add(key)
        if len(keys) == size:
            return False
        order = self._order
        order.append(key)
        if len(order) > self.capacity:
            keys.discard(order.popleft())
        return True


@dataclass
class PartitionLedger:
    partition: int
    high_water: tuple[int, int] = (-1, -1)   # (offset, index in record) of the last stored event
    recent_capacity: int = 200_000
    max_open_runs: int = 500_000
    recent: RecentKeys = field(init=False)
    open_runs: OrderedDict[Key, OpenRun] = field(default_factory=OrderedDict)   # by (account_id, run_id)
    skipped_redelivered: int = 0
    duplicates: int = 0
    topic_resets: int = 0

    def __post_init__(self) -> None:
        self.recent = RecentKeys(self.recent_capacity)

    @classmethod
    def from_state(cls, state: LedgerState) -> PartitionLedger:
        """The ledger of a partition whose stored state is ``state`` (``Warehouse.load_ledger``):
        its high-water position, its recent (account, event id) pairs in the horizon (oldest
        first) and its half-seen runs."""
        ledger = cls(state.partition, high_water=state.high_water, recent_capacity=state.recent_capacity)
        for account_id, event_id in state.recent:
            ledger.remember_event(account_id, event_id)
        for run in state.open_runs:
            ledger.remember_open_run(run.account_id, run.run_id, run.queued_at, run.started_at)
        return ledger

    def annotate(self, event: Event | FastEvent, offset: int, index: int = 0) -> Annotation | None:
        """Decide about the event at (``offset``, ``index``); None means: already stored, skip it.
        Another account's event with the same ids is a different event: new, paired apart."""
        position = (offset, index)
        recent = self.recent
        key = (sys.intern(event.account_id), event.event_id)   # key_of, inlined: once per event
        if position <= self.high_water:
            if key in recent:
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
        if not recent.add(key):
            self.duplicates += 1
            return _DUPLICATE
        kind = event.type
        if kind == "run.queued":
            return self._pair((key[0], event.run_id), queued_at=event.ts)
        if kind == "run.started":
            return self._pair((key[0], event.run_id), started_at=event.ts)
        return _NEW

    def _pair(self, key: Key, *, queued_at: datetime | None = None,
              started_at: datetime | None = None) -> Annotation:
        run = self.open_runs.pop(key, None)
        if run is None:
            self.open_runs[key] = OpenRun(queued_at, started_at)
            if len(self.open_runs) > self.max_open_runs:
                self.open_runs.popitem(last=False)
            return _NEW
        queued = queued_at or run.queued_at
        started = started_at or run.started_at
        if queued is None or started is None:  # the same half seen twice under two event ids
            self.open_runs[key] = OpenRun(queued, started)
            return _NEW
        wait_ms = round((started - queued).total_seconds() * 1000)
        return Annotation(is_new=True, queue_wait_ms=wait_ms, queue_wait_at=started)

    def remember_event(self, account_id: str, event_id: str) -> None:
        """Seed the horizon with an event stored earlier (oldest first) when the partition is loaded."""
        self.recent.add(key_of(account_id, event_id))

    def remember_open_run(self, account_id: str, run_id: str, queued_at: datetime | None,
                          started_at: datetime | None) -> None:
        """Seed a half-seen run of ``account_id`` from the warehouse when the partition is loaded."""
        self.open_runs[key_of(account_id, run_id)] = OpenRun(queued_at, started_at)


class Annotated(NamedTuple):
    """A group of events after its ledgers' pass (``annotate_group``)."""
    kept: list[SourcedEvent]        # to store: every event but those already stored
    notes: list[Annotation]         # one per kept event
    signals: list[RunSignal]        # the detectors' signals of the new ones (a duplicate's went with its first copy)
    duplicates: int                 # kept events marked not new


def annotate_group(items: Sequence[SourcedEvent], ledgers: Mapping[int, PartitionLedger]) -> Annotated:
    """Run each event of a group (in (partition, offset, line) order) through its partition's
    ledger, in one pass. Mutates the ledgers: a group passed twice is, the second time, skipped
    as already stored (what a redelivery after a crash is)."""
    kept: list[SourcedEvent] = []
    notes: list[Annotation] = []
    signals: list[RunSignal] = []
    duplicates = 0
    ledger: PartitionLedger | None = None
    ledger_partition = -1
    for item in items:
        event, partition, offset, line, _ = item
        if ledger is None or partition != ledger_partition:
            ledger, ledger_partition = ledgers[partition], partition
        note = ledger.annotate(event, offset, line)
        if note is None:
            continue
        kept.append(item)
        notes.append(note)
        if not note.is_new:
            duplicates += 1
        elif event.type in SIGNAL_TYPES and (signal := signal_of(event, partition, offset, line)) is not None:
            signals.append(signal)
    return Annotated(kept, notes, signals, duplicates)
