"""Growing queues: an account's pending runs growing minute after minute (rule in the
``streams.detectors`` package docstring)."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from datetime import datetime

from streams.detectors.alert import (
    _MINUTE_MS,
    Alert,
    Watermark,
    _alert_id,
    _common_floor,
    _dt,
    _Firing,
    _ms,
    _require_at_least,
    _targets,
)


class _Queue:
    __slots__ = ("pending", "running", "buckets", "order", "samples", "arrivals", "starts", "finishes", "firing",
                 "last_seen_ms", "next", "first")

    def __init__(self, history: int, next_minute: int | None) -> None:
        self.pending = 0
        self.running = 0
        self.buckets: dict[int, list[int]] = {}  # bucket -> [pending delta, running delta, arrivals, starts, finishes]
        self.order: list[int] = []  # heap of the buckets in ``buckets``
        self.next = next_minute  # next minute to evaluate (None: not started)
        self.first: int | None = None  # earliest minute observed before the first evaluation
        # the depth before an account's first event is 0 by definition
        self.samples: deque[int] = deque([0] * history, maxlen=history)  # pending at each minute's end
        self.arrivals: deque[int] = deque([0] * history, maxlen=history)  # per minute
        self.starts: deque[int] = deque([0] * history, maxlen=history)  # per minute
        self.finishes: deque[int] = deque([0] * history, maxlen=history)  # per minute
        self.firing: _QueueFiring | None = None
        self.last_seen_ms = 0


class _QueueFiring(_Firing):
    __slots__ = ("peak_pending",)

    def __init__(self, alert_id: str, started_ms: int, severity: str, pending: int) -> None:
        super().__init__(alert_id, started_ms, severity)
        self.peak_pending = pending


class QueueGrowthDetector:
    """An account's queue of pending runs growing minute after minute.

    Deltas are kept in ``bucket_seconds`` buckets until the watermark passes them, then
    folded into the account's running totals; the depth is sampled at the end of every
    minute. ``max_accounts`` caps the accounts tracked (least recently seen evicted);
    accounts with nothing pending or running and no events for ``idle_minutes`` are dropped."""

    kind = "queue_growing"

    def __init__(self, *, bucket_seconds: int = 10, growth_minutes: int = 5, min_pending: int = 50,
                 clear_minutes: int = 3, critical_pending: int | None = None, max_accounts: int = 100_000,
                 idle_minutes: int = 60) -> None:
        if bucket_seconds < 1 or 60 % bucket_seconds:
            raise ValueError("bucket_seconds must divide 60")
        _require_at_least(1, growth_minutes=growth_minutes, clear_minutes=clear_minutes, max_accounts=max_accounts)
        self.bucket_seconds = int(bucket_seconds)
        self.growth_minutes = int(growth_minutes)
        self.min_pending = int(min_pending)
        self.clear_minutes = int(clear_minutes)
        self.critical_pending = int(critical_pending) if critical_pending is not None else 10 * self.min_pending
        self.max_accounts = int(max_accounts)
        self.idle_minutes = int(idle_minutes)
        self._bucket_ms = self.bucket_seconds * 1000
        self._accounts: OrderedDict[str, _Queue] = OrderedDict()
        # where forgotten (idle) accounts' clocks stood, so that their late data stays late
        self._forgotten: OrderedDict[str, int] = OrderedDict()
        self._floor: int | None = None  # where a new account starts after a common watermark
        # sampled_minutes: (account, minute) evaluations one at a time (the cost of advancing)
        self.stats = {"late_deltas": 0, "evicted_accounts": 0, "sampled_minutes": 0}

    def lifecycle(self, account_id: str, at: datetime, pending_delta: int, running_delta: int) -> None:
        """run.queued -> (+1, 0) at its ts; run.started -> (-1, +1); run.finished -> (0, -1).
        Depth at time t is the sum of the deltas with time <= t, whatever their arrival order."""
        t = _ms(at, "at")
        accounts = self._accounts
        q = accounts.get(account_id)
        if q is None:
            if len(accounts) >= self.max_accounts:
                # the first account not firing, else the oldest
                key = next((k for k, old in accounts.items() if old.firing is None), None)
                if key is None:
                    key = next(iter(accounts))
                evicted = accounts.pop(key)
                if evicted.next is not None:
                    self._forget(key, evicted.next)
                self.stats["evicted_accounts"] += 1
            resume = self._forgotten.pop(account_id, None)
            q = accounts[account_id] = _Queue(self.growth_minutes + 1, self._floor if resume is None else resume)
        else:
            accounts.move_to_end(account_id)
        if t > q.last_seen_ms:
            q.last_seen_ms = t
        minute = t // _MINUTE_MS
        if q.next is not None and minute < q.next:
            # its minute was evaluated already: it only changes the depth from now on
            q.pending += pending_delta
            q.running += running_delta
            self.stats["late_deltas"] += 1
            return
        if q.next is None and (q.first is None or minute < q.first):
            q.first = minute
        b = t // self._bucket_ms
        x = q.buckets.get(b)
        if x is None:
            x = q.buckets[b] = [0, 0, 0, 0, 0]
            heapq.heappush(q.order, b)
        x[0] += pending_delta
        x[1] += running_delta
        if pending_delta > 0:
            x[2] += pending_delta
        if running_delta > 0:
            x[3] += running_delta
        elif running_delta < 0:
            x[4] -= running_delta

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Evaluate every whole minute that ends at or before the watermark and was not
        evaluated yet; return the alerts that started firing or resolved, by minute and account.
        ``watermark`` is one time for every account or a mapping ``{account_id: time}`` that
        moves only those accounts' clocks."""
        targets, common = _targets(watermark, self._accounts)
        out: list[tuple[int, str, Alert]] = []
        for account_id, w in targets:
            q = self._accounts.get(account_id)
            if q is not None:
                self._advance_account(account_id, q, w // _MINUTE_MS - 1, out)
        if common is not None:
            self._floor = _common_floor(self._floor, common // _MINUTE_MS, self._accounts.values())
        out.sort(key=lambda x: (x[0], x[1]))
        return [alert for _, _, alert in out]

    def _advance_account(self, account_id: str, q: _Queue, last: int, out: list[tuple[int, str, Alert]]) -> None:
        """Sample and judge the account's minutes up to ``last``. A minute without data after a
        judged one repeats its depth, so nothing can start firing: while no alert fires, such
        minutes are skipped in one step (the history is filled with the repeated depth)."""
        if q.next is None:
            if q.first is None or q.first > last:
                return
            q.next = q.first
        per_minute = 60 // self.bucket_seconds
        history = self.growth_minutes + 1
        while q.next <= last:
            m = q.next
            self.stats["sampled_minutes"] += 1
            end_bucket = (m + 1) * per_minute  # buckets < end_bucket belong to minutes <= m
            arrivals = starts = finishes = 0
            order, buckets = q.order, q.buckets
            while order and order[0] < end_bucket:
                dp, dr, arr, st, fin = buckets.pop(heapq.heappop(order))
                q.pending += dp
                q.running += dr
                arrivals += arr
                starts += st
                finishes += fin
            q.samples.append(q.pending)
            q.arrivals.append(arrivals)
            q.starts.append(starts)
            q.finishes.append(finishes)
            alert = self._evaluate(account_id, q, m)
            if alert is not None:
                out.append((m, account_id, alert))
            q.next = m + 1
            if q.firing is None and q.next <= last:
                upto = min(order[0] // per_minute if order else last + 1, last + 1)  # next minute with data
                idle = upto - q.next
                if idle > 0:
                    for _ in range(min(idle, history)):
                        q.samples.append(q.pending)
                        q.arrivals.append(0)
                        q.starts.append(0)
                        q.finishes.append(0)
                    q.next = upto
            if (q.firing is None and not q.buckets and q.pending == 0 and q.running == 0
                    and q.last_seen_ms < (q.next - self.idle_minutes) * _MINUTE_MS):
                del self._accounts[account_id]
                self._forget(account_id, q.next)
                return

    def _forget(self, account_id: str, next_minute: int) -> None:
        forgotten = self._forgotten
        forgotten[account_id] = next_minute
        forgotten.move_to_end(account_id)
        while len(forgotten) > self.max_accounts:
            forgotten.popitem(last=False)

    def _numbers(self, q: _Queue) -> dict[str, float]:
        g = self.growth_minutes
        samples = q.samples
        arrivals = sum(list(q.arrivals)[-g:]) / g
        starts = sum(list(q.starts)[-g:]) / g
        finishes = sum(list(q.finishes)[-g:]) / g
        pending = q.pending
        growth = (samples[-1] - samples[0]) / (len(samples) - 1)
        eta = pending / (starts - arrivals) if starts > arrivals else math.inf
        drain = pending / starts if starts > 0 else math.inf
        return {
            "pending": float(pending), "running": float(q.running), "growth_per_minute": growth,
            "arrivals_per_minute": arrivals, "starts_per_minute": starts, "finishes_per_minute": finishes,
            "eta_minutes": eta,
            "drain_minutes": drain if pending > 0 else 0.0, "growth_minutes": float(g),
        }

    def _evaluate(self, account_id: str, q: _Queue, m: int) -> Alert | None:
        s = q.samples
        grew_now = s[-1] > s[-2]
        growing = q.pending >= self.min_pending and all(s[i] > s[i - 1] for i in range(1, len(s)))
        end_ms = (m + 1) * _MINUTE_MS
        fs = q.firing
        if fs is None:
            if growing:
                x = self._numbers(q)
                severity = "critical" if (q.pending >= self.critical_pending or x["starts_per_minute"] == 0) \
                    else "warning"
                started = _dt(end_ms)
                alert_id = _alert_id(self.kind, account_id, account_id, started)
                q.firing = _QueueFiring(alert_id, end_ms, severity, q.pending)
                summary = (f"{account_id}: {q.pending} runs pending and growing for {self.growth_minutes} min "
                           f"({x['growth_per_minute']:+.0f}/min), {q.running} running; "
                           f"{x['arrivals_per_minute']:.0f} arriving vs {x['starts_per_minute']:.0f} starting per "
                           f"minute, {self._eta_text(x)}")
                return Alert(alert_id, self.kind, account_id, account_id, account_id, "firing", severity,
                             started, None, summary, x)
            return None
        if q.pending > fs.peak_pending:
            fs.peak_pending = q.pending
        if grew_now and q.pending >= self.min_pending:
            fs.holds()
            return None
        if not fs.quiet(end_ms, self.clear_minutes):
            return None
        x = self._numbers(q)
        x["peak_pending"] = float(fs.peak_pending)
        q.firing = None
        summary = (f"{account_id}: queue stopped growing, {q.pending} runs pending (peak {fs.peak_pending}), "
                   f"{q.running} running, {x['starts_per_minute']:.0f} starting per minute, {self._eta_text(x)}")
        return Alert(fs.alert_id, self.kind, account_id, account_id, account_id, "resolved", fs.severity,
                     _dt(fs.started_ms), _dt(fs.clear_since_ms), summary, x)

    @staticmethod
    def _eta_text(x: dict[str, float]) -> str:
        if math.isfinite(x["eta_minutes"]):
            return f"backlog clears in about {x['eta_minutes']:.0f} min"
        if math.isfinite(x["drain_minutes"]):
            return (f"not draining (would take {x['drain_minutes']:.0f} min at the current start rate "
                    f"if arrivals stopped)")
        return "nothing is starting"

    def state_sizes(self) -> dict[str, int]:
        return {
            "accounts": len(self._accounts),
            "buckets": sum(len(q.buckets) for q in self._accounts.values()),
            "firing": sum(1 for q in self._accounts.values() if q.firing is not None),
        }

    def describe(self) -> str:
        return (
            f"Queue growing (each account): the pending depth (runs queued, not started) is sampled at the end "
            f"of every minute. Fire when it grew in each of the last {self.growth_minutes} minutes and is >= "
            f"{self.min_pending} now; critical at >= {self.critical_pending} pending or when no run started in "
            f"those minutes. Resolve after {self.clear_minutes} consecutive minutes without growth or below "
            f"{self.min_pending}."
        )
