"""The detectors of one detector partition: run signals in, alert state changes out, and a
snapshot to go on from after a restart or a rebalance.

Fed by packets of the detector topic (``streams.signals``), in event time with one watermark per
account (``AccountWatermarks``: one clock per account and events partition, held back by lagging
partitions, following the wall clock once the account's input is quiet). ``lateness`` delays
each evaluation so out-of-order events up to that age still count; no account's clock runs ahead
of the wall clock by more than ``future_tolerance``.

Exactly once per signal: a signal carries its position in the events topic, and the newest
position applied per events partition is kept, so a packet sent again (a redelivered batch, a
rebalance of the events topic, a restart from an older snapshot) changes nothing it already
changed. ``snapshot`` / ``restore`` carry everything (detectors, watermarks, positions) as
compressed pickled bytes; ``restore`` unpickles only the classes of the detectors and a few
standard containers (``_SnapshotUnpickler``), so a forged snapshot cannot run code.
"""

from __future__ import annotations

import io
import pickle
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from streams.detectors import AccountWatermarks, Alert, Detectors
from streams.signals import Packet, RunSignal

FUTURE_TOLERANCE = timedelta(seconds=60)
"""How far ahead of the worker's wall clock an event may move its account's clock. Validation
may accept events a little further ahead (engines' clocks drift); they are stored and counted,
their account's clock simply stops at wall clock + this tolerance."""

STATUS_STALE = timedelta(seconds=30)
"""An events partition whose status was not heard of for this long (or for the idle timeout, if
that is shorter) counts as lagging (workers send it with every batch and every ``idle / 6``
seconds, 1 to 5, while idle). Never longer than the idle timeout: a worker that died right after
saying its partition was read to the end would otherwise let the idle rule move the watermark
past the records that pile up there until another worker takes the partition over."""

IDLE_TIMEOUT = timedelta(seconds=30)
"""How long an account's input must be quiet (its partitions read to their end, nothing of it
arriving) before its watermark follows the wall clock."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PartitionDetectors:
    """See the module docstring. ``now`` is the wall clock (a parameter for tests)."""

    def __init__(self, lateness: timedelta, detectors: Detectors | None = None, *,
                 future_tolerance: timedelta = FUTURE_TOLERANCE, idle: timedelta = IDLE_TIMEOUT,
                 partitions: int = 1, now: Callable[[], datetime] = _utc_now):
        self.detectors = detectors or Detectors()
        self.watermarks = AccountWatermarks(lateness, future_tolerance, idle)
        self.applied: dict[int, tuple[int, int]] = {}   # events partition -> newest (offset, line) applied
        # events partition -> (records not read yet, when that was last heard)
        self.status: dict[int, tuple[bool, datetime]] = {}
        self.partitions = partitions                    # of the events topic
        self.applied_to = -1                            # offset of the last packet applied (set by the worker)
        self._now = now

    @property
    def too_late(self) -> int:
        """Signals read after their account's watermark had passed them (counted, not judged)."""
        return self.watermarks.stats["too_late"]

    def observe(self, signal: RunSignal, now: datetime | None = None) -> bool:
        """One run signal read at wall-clock time ``now``; False (and nothing changes) when its
        position was applied before."""
        position = (signal.offset, signal.line)
        if position <= self.applied.get(signal.partition, (-1, -1)):
            return False
        self.applied[signal.partition] = position
        account, ts = signal.account_id, signal.ts
        self.watermarks.observe(account, signal.partition, ts, self._now() if now is None else now)
        self.detectors.observe_signal(account, signal.kind, signal.workflow_id, signal.workflow_name, signal.run_id,
                                      ts, signal.started_at, signal.failed, signal.workflow_version,
                                      signal.error_code, signal.error_class)
        return True

    def apply(self, packet: Packet, now: datetime | None = None, sent_at: datetime | None = None) -> list[Alert]:
        """A packet's signals and partition status, then what they made judgeable. The status
        counts as heard when the packet was sent (``sent_at``, its record's time), not when it is
        applied: a packet read again after a restore or a skip says where a partition stood then,
        and may be older than ``STATUS_STALE``."""
        now = self._now() if now is None else now
        for signal in packet.signals:
            self.observe(signal, now)
        heard = now if sent_at is None else min(now, sent_at)
        self.status.update((p, (lagging, heard)) for p, lagging in packet.lagging.items())
        return self.advance(now)

    def advance(self, now: datetime | None = None, *, every_account: bool = False) -> list[Alert]:
        """Judge what the watermarks of the accounts that sent signals since the last call (or of
        every account: what the wall clock alone moves) have made judgeable."""
        now = self._now() if now is None else now
        self.watermarks.lagging(self.held_back(now))
        moved = self.watermarks.moved(now, every_account=every_account)
        return self.detectors.advance(moved) if moved else []

    def held_back(self, now: datetime) -> set[int]:
        """The events partitions that may still hold unread records: said to lag, or not heard of
        for ``STATUS_STALE`` or the idle timeout (their worker is gone, or has not reported yet: nothing says they are
        read to their end)."""
        stale = now - min(STATUS_STALE, self.watermarks.idle)
        return {p for p in range(self.partitions) if (s := self.status.get(p)) is None or s[0] or s[1] <= stale}

    # ---- durability

    def snapshot(self) -> bytes:
        state = {key: value for key, value in self.__dict__.items() if key != "_now"}
        return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), 1)

    @classmethod
    def restore(cls, blob: bytes, *, now: Callable[[], datetime] = _utc_now) -> PartitionDetectors:
        state = _SnapshotUnpickler(io.BytesIO(zlib.decompress(blob))).load()
        if not isinstance(state, dict) or not isinstance(state.get("detectors"), Detectors):
            raise pickle.UnpicklingError("not a detector snapshot")
        restored = cls.__new__(cls)
        restored.__dict__.update(state)
        restored._now = now
        return restored


_ALLOWED = {("collections", "OrderedDict"), ("collections", "deque"), ("builtins", "set"),
            ("builtins", "frozenset"), ("datetime", "datetime"), ("datetime", "timedelta"),
            ("datetime", "timezone")}


class _SnapshotUnpickler(pickle.Unpickler):
    """Unpickles the detectors' own classes and standard containers, nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED or (module.startswith("streams.detectors.") and not name.startswith("__")):
            found = super().find_class(module, name)
            if isinstance(found, type):
                return found
        raise pickle.UnpicklingError(f"a detector snapshot may not hold {module}.{name}")
