"""One event-time clock per account: how far each account's alerts may be judged."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime, timedelta

from streams.detectors.alert import _MS, _dt, _ms


class EventClocks:
    """Event-time clocks, one per account: how far each account's alerts may be judged.

    An account's clock is the newest event time *that account* has sent, except that an
    event never moves it beyond the wall clock at the moment the event was seen plus
    ``future_tolerance`` (the caller passes that moment as ``now``; nothing here reads a
    clock). The account's watermark is its clock minus ``lateness``. So an event dated in
    the future, from any account or sender, cannot delay, suppress or bring forward another
    account's alerts, and moves its own account's watermark at most to
    ``now + future_tolerance - lateness``. Clocks never go back. Accounts past
    ``max_accounts`` are forgotten least recently seen first: such an account's clock
    restarts from its next event (the detectors keep their own progress, so nothing is
    judged twice). Not durable: a restarted worker starts every clock again."""

    def __init__(self, lateness: timedelta, future_tolerance: timedelta = timedelta(minutes=1), *,
                 max_accounts: int = 100_000) -> None:
        if lateness < timedelta(0) or future_tolerance < timedelta(0) or max_accounts < 1:
            raise ValueError("need lateness >= 0, future_tolerance >= 0 and max_accounts >= 1")
        self.lateness = lateness
        self.future_tolerance = future_tolerance
        self.max_accounts = int(max_accounts)
        self._lateness_ms = lateness // _MS
        self._tolerance_ms = future_tolerance // _MS
        self._clocks: OrderedDict[str, int] = OrderedDict()  # account -> clock (ms), LRU
        self._moved: set[str] = set()
        self._now: datetime | None = None  # the last wall-clock time given, and its cap (ms)
        self._cap = 0
        self.stats = {"capped": 0, "too_late": 0, "forgotten_accounts": 0}

    def observe(self, account_id: str, ts: datetime, now: datetime) -> bool:
        """An event of ``account_id`` at ``ts``, seen at wall-clock time ``now``. Returns True when
        it is too late for alerting: older than the account's watermark before it arrived (it
        still counts in every aggregate; the detectors treat it as late data)."""
        t = _ms(ts, "ts")
        if now is not self._now:  # the worker passes one time per batch
            self._cap = _ms(now, "now") + self._tolerance_ms
            self._now = now
        cap = self._cap
        if t > cap:
            self.stats["capped"] += 1
            t = cap
        clocks = self._clocks
        clock = clocks.get(account_id)
        if clock is None:
            if len(clocks) >= self.max_accounts:
                forgotten, _ = clocks.popitem(last=False)
                self._moved.discard(forgotten)
                self.stats["forgotten_accounts"] += 1
            clocks[account_id] = t
            self._moved.add(account_id)
            return False
        clocks.move_to_end(account_id)
        if t > clock:
            clocks[account_id] = t
            self._moved.add(account_id)
            return False
        if t < clock - self._lateness_ms:
            self.stats["too_late"] += 1
            return True
        return False

    def watermark(self, account_id: str) -> datetime | None:
        """The account's watermark (None: no event of it seen, or forgotten)."""
        clock = self._clocks.get(account_id)
        return None if clock is None else _dt(clock - self._lateness_ms)

    def moved(self) -> dict[str, datetime]:
        """``{account_id: watermark}`` of the accounts whose clock moved since the last call, for
        ``Detectors.advance``; the other accounts have nothing new to judge."""
        clocks, lateness = self._clocks, self._lateness_ms
        out = {account: _dt(clocks[account] - lateness) for account in sorted(self._moved)}
        self._moved.clear()
        return out

    def __len__(self) -> int:
        return len(self._clocks)
