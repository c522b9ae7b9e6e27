"""Event-time watermarks per account, from one clock per (account, input partition).

How far an account's alerts may be judged (its *watermark*) is decided by where each input
partition stands, as stream processors do, and by nothing another account sends:

- a *lane* is one account on one input partition; its clock is the newest event time of that
  account read from that partition (never more than ``future_tolerance`` ahead of the wall
  clock at the moment the event was read);
- the account's clock is the minimum over its *active* lanes: a lane is active while its
  partition still has records the worker has not read (it is *lagging*), or while the lane
  received an event less than ``idle`` ago (wall clock). A partition the account was never
  seen on holds the account back only while that partition lags: to the newest event time
  read from it (to nothing at all when none was read yet);
- when no lane of the account is active (its input has gone quiet: the partitions are read
  to their end and nothing of the account arrived for ``idle``), the clock follows the wall
  clock: ``max(newest lane clock, now - idle)``, so the last minutes before traffic stops are
  judged, and quiet is noticed at all;
- the watermark is the clock minus ``lateness``, and never goes back.

So a batch that holds hours of one partition before the first minutes of the next moves
nothing until the slowest partition has caught up (history replayed in one go gives the same
alerts as the same events sent live), a lagging partition holds judgement back, and an event
dated in the future moves only its own account's lanes, at most to the wall clock plus
``future_tolerance``. An event older than its account's watermark when it is read is *too
late*: it is counted in every aggregate, but the detectors have judged its minute already.

Pure: no I/O and no clock; the caller passes the wall-clock time (``now``) and which input
partitions lag. Not durable: a restarted worker starts every watermark again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta

from streams.detectors.alert import _MS, _dt, _ms

_NEVER = -(1 << 62)


class AccountWatermarks:
    """See the module docstring. ``max_accounts`` bounds memory: the account seen least
    recently is forgotten first (its watermark restarts from its next event; the detectors keep
    their own progress, so nothing is judged twice)."""

    def __init__(self, lateness: timedelta, future_tolerance: timedelta, idle: timedelta, *,
                 max_accounts: int = 100_000) -> None:
        if lateness < timedelta(0) or future_tolerance < timedelta(0) or idle <= timedelta(0) or max_accounts < 1:
            raise ValueError("need lateness >= 0, future_tolerance >= 0, idle > 0 and max_accounts >= 1")
        self.lateness, self.future_tolerance, self.idle = lateness, future_tolerance, idle
        self.max_accounts = int(max_accounts)
        self._lateness_ms, self._tolerance_ms, self._idle_ms = lateness // _MS, future_tolerance // _MS, idle // _MS
        # account -> {partition: [clock ms, read at (wall ms)]}, least recently seen first
        self._lanes: OrderedDict[str, dict[int, list[int]]] = OrderedDict()
        self._marks: dict[str, int] = {}          # account -> watermark (ms)
        self._partitions: dict[int, int] = {}     # partition -> newest event time read from it (ms)
        self._lagging: frozenset[int] = frozenset()
        self._touched: set[str] = set()
        self.stats = {"capped": 0, "too_late": 0, "forgotten_accounts": 0}

    # ---- input

    def observe(self, account_id: str, partition: int, ts: datetime, now: datetime) -> bool:
        """An event of ``account_id`` read from ``partition`` at wall-clock time ``now``. Returns
        True when it is too late for alerting (older than the account's watermark)."""
        t, now_ms = _ms(ts, "ts"), _ms(now, "now")
        cap = now_ms + self._tolerance_ms
        if t > cap:
            self.stats["capped"] += 1
            t = cap
        lanes = self._lanes.get(account_id)
        if lanes is None:
            if len(self._lanes) >= self.max_accounts:
                forgotten, _ = self._lanes.popitem(last=False)
                self._marks.pop(forgotten, None)
                self._touched.discard(forgotten)
                self.stats["forgotten_accounts"] += 1
            lanes = self._lanes[account_id] = {}
        else:
            self._lanes.move_to_end(account_id)
        lane = lanes.get(partition)
        if lane is None:
            lanes[partition] = [t, now_ms]
        else:
            if t > lane[0]:
                lane[0] = t
            lane[1] = now_ms
        if t > self._partitions.get(partition, _NEVER):
            self._partitions[partition] = t
        self._touched.add(account_id)
        too_late = t < self._marks.get(account_id, _NEVER)
        if too_late:
            self.stats["too_late"] += 1
        return too_late

    def lagging(self, partitions: Iterable[int]) -> None:
        """The input partitions that still hold records not read yet (all others are read to
        their end); replaces what was said before."""
        self._lagging = frozenset(partitions)

    # ---- output

    def watermark(self, account_id: str) -> datetime | None:
        """The account's watermark (None: no event of it seen, or forgotten)."""
        mark = self._marks.get(account_id)
        return None if mark is None else _dt(mark)

    def moved(self, now: datetime, *, every_account: bool = False) -> dict[str, datetime]:
        """``{account_id: watermark}`` of the accounts whose watermark moved, for
        ``Detectors.advance``. Looks at the accounts that sent events since the last call, or at
        every account with ``every_account`` (what the wall clock alone can move: call it every
        few seconds, also when no event arrives)."""
        now_ms = _ms(now, "now")
        accounts = list(self._lanes) if every_account else sorted(self._touched)
        self._touched.clear()
        out: dict[str, datetime] = {}
        for account in accounts:
            lanes = self._lanes.get(account)
            if lanes is None:
                continue
            mark = self._clock(lanes, now_ms) - self._lateness_ms
            if mark > self._marks.get(account, _NEVER):
                self._marks[account] = mark
                out[account] = _dt(mark)
        return dict(sorted(out.items()))

    def _clock(self, lanes: dict[int, list[int]], now_ms: int) -> int:
        lagging, quiet_before = self._lagging, now_ms - self._idle_ms
        active = [clock for p, (clock, read_at) in lanes.items() if p in lagging or read_at > quiet_before]
        active.extend(self._partitions.get(p, _NEVER) for p in lagging if p not in lanes)
        if active:
            return min(active)
        return max(max(clock for clock, _ in lanes.values()), quiet_before)

    def __len__(self) -> int:
        return len(self._lanes)
