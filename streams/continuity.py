"""Which offsets of each owned partition the worker has not handled although later ones arrived:
the holes the consumer left. Pure, no I/O.

Faust can skip records of a partition for good. After a table recovery it seeks the stream
partitions to their committed offsets while records still flow, then empties the stream queues:
records fetched in between are dropped, and its read position has already moved past them
(faust-streaming issue 596). Their offsets are never acknowledged, so the partition's commits stop
there; when a single record is lost, Faust commits past it (issue 606) and it is lost for good.

The worker therefore keeps, per partition, the next offset it expects (the committed offset when
it starts on a partition, then one past each record it handled). A record beyond it shows a hole;
so does a partition whose consumer has read beyond it (its read position) while nothing of it is
delivered for ``STALL_SECONDS``: records it read and then dropped. A partition the consumer has
simply not read that far yet (a slow or restarting broker) is not a hole. The worker reads a
hole's records from the topic itself, handles them like any batch, and then tells the consumer
those offsets are done so that its commits move on. Safe on crash, retry and duplicate:
redelivery is exact (the ledger skips stored events, the detectors skip packets they applied),
so a hole that was only late costs a second read, never a double count; a batch that fails
leaves the expected offset where it was, so its holes are found again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

STALL_SECONDS = 15.0
"""How long the consumer may have read beyond the expected offset with nothing of the partition
delivered before the worker reads those records itself."""

HOLE_READ_SECONDS = 10.0
"""How long reading a hole from the topic may take before it is given up (and tried again)."""

REREAD_ATTEMPTS = 6
"""Reads of skipped offsets (each up to ``HOLE_READ_SECONDS``, with backoff between: about 70 s)
before the worker checks whether the broker serves the record after them (``read_again``)."""

HOLE_MAX_RECORDS = 20_000
"""At most this many offsets of a stalled partition are read at one check (the rest at the next)."""


Hole = tuple[int, int]
"""Offsets ``start`` .. ``end - 1`` of one partition."""


@dataclass
class Continuity:
    """The next offset expected per partition and when each last moved (monotonic seconds)."""

    next_offset: dict[int, int] = field(default_factory=dict)
    moved_at: dict[int, float] = field(default_factory=dict)

    def start(self, partition: int, committed: int | None, now: float) -> None:
        """Begin tracking ``partition`` at its committed offset (unknown: nothing to compare yet)."""
        if partition not in self.next_offset and committed is not None and committed >= 0:
            self.next_offset[partition] = committed
            self.moved_at[partition] = now

    def holes(self, partition: int, offsets: Iterable[int]) -> list[Hole]:
        """The offsets missing before or between ``offsets`` (ascending) of ``partition``."""
        expected = self.next_offset.get(partition)
        if expected is None:
            return []
        found: list[Hole] = []
        for offset in offsets:
            if offset > expected:
                found.append((expected, offset))
            expected = max(expected, offset + 1)
        return found

    def handled(self, partition: int, last_offset: int, now: float) -> None:
        """Every offset of ``partition`` up to ``last_offset`` is handled."""
        if last_offset + 1 > self.next_offset.get(partition, -1):
            self.next_offset[partition] = last_offset + 1
        self.moved_at[partition] = now

    def stalled(self, read_to: Mapping[int, int | None], in_flight: set[int], now: float) -> list[tuple[int, Hole]]:
        """Partitions whose consumer has read (``read_to``: the offset of the last record it read)
        at or beyond the expected offset while none of their records is in flight and they have
        not moved for ``STALL_SECONDS``: (partition, hole) each, at most ``HOLE_MAX_RECORDS``
        offsets long."""
        found: list[tuple[int, Hole]] = []
        for partition, last in read_to.items():
            expected = self.next_offset.get(partition)
            if expected is None or last is None or last < expected or partition in in_flight:
                continue
            if now - self.moved_at.get(partition, now) >= STALL_SECONDS:
                found.append((partition, (expected, min(last + 1, expected + HOLE_MAX_RECORDS))))
        return found

    def forget(self, partition: int) -> None:
        """Another worker may own ``partition`` next."""
        self.next_offset.pop(partition, None)
        self.moved_at.pop(partition, None)
