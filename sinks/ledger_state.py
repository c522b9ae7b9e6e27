"""The values the worker's per-partition ledger (``streams.ledger``) exchanges with the
warehouse. Pure, no I/O.

- ``Annotation``: what the ledger decided about one event; the row mapping (``sinks.rows``)
  writes it as the ``is_new`` / ``queue_wait_*`` columns.
- ``LedgerState``: what is stored about one events-topic partition, as read back by
  ``sinks.clickhouse.Warehouse.load_ledger``; ``streams.ledger.PartitionLedger.from_state``
  turns it into a ledger.

Ids are only unique within an account, so every id here comes with its ``account_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Annotation:
    """What the ledger decided about one event."""

    is_new: bool
    queue_wait_ms: int | None = None
    queue_wait_at: datetime | None = None   # the run's start time: the sample's bucket


class StoredOpenRun(NamedTuple):
    """A half-seen run: queued but not started, or started with its queued event still missing."""

    account_id: str
    run_id: str
    queued_at: datetime | None
    started_at: datetime | None


@dataclass(frozen=True, slots=True)
class LedgerState:
    """What is stored about one partition: the (offset, index) stored last (``(-1, -1)`` when
    nothing is), the last (account_id, event_id) pairs stored, **oldest first** (they leave the
    horizon first), and its half-seen runs. ``recent_capacity``: the horizon it was read with."""

    partition: int
    recent_capacity: int = 200_000
    high_water: tuple[int, int] = (-1, -1)
    recent: tuple[tuple[str, str], ...] = ()
    open_runs: tuple[StoredOpenRun, ...] = ()
