"""Alert detectors that run inside the stream worker.

Pure and deterministic: no I/O, no wall clock, no randomness. Time is the *event* time,
advanced by a watermark the caller passes to ``advance``: one time for every account, or one
per account. The worker keeps one clock per account (``EventClocks``: the newest event time
of that account, never more than a small tolerance ahead of the wall clock, minus the
allowed lateness), so one account's or one sender's clock can neither delay, suppress nor
fabricate another account's alerts: every detector's state is per account and judged by
that account's watermark only. Every detector evaluates whole minutes: a minute
``[t, t + 1 min)`` of an account is evaluated once, when its watermark reaches its end, with
all the data whose event time falls before that end. Events that arrive out of order but
before the watermark passes their minute therefore give exactly the same alerts as the
same events in time order. Minutes in which nothing can change (no data in the window, no
run due, no alert firing) are skipped in one step, so a watermark that jumps by years costs
no more than one that moves by a minute. ``advance`` returns state changes only: an alert
once when it starts firing and once when it resolves, with the same ``alert_id`` both times.

The rules and their default thresholds
--------------------------------------

**Failure spike** (``failure_spike``, one per workflow; an account-wide variant with
``scope="account"``). Each workflow is judged against its own recent history, not a
global threshold. Every minute the detector looks at the last 5 whole minutes (the
*window*) and the 120 minutes before it (the *baseline*). The baseline failure rate is
smoothed with a small prior: 20 imaginary runs failing at 2%, so a workflow with little
history counts as failing about 2% of the time instead of 0% or 100%. It fires when all
of these hold: the window has at least 10 finished runs, at least 5 of them failed, the
window's failure rate is at least 3 times the baseline rate, and so many failures would
happen by chance at the baseline rate with probability at most 1 in 10,000 (one-sided
binomial test) - also once the uncertainty of the baseline rate itself is allowed for
(beta-binomial test: a baseline of a few dozen runs proves little; ``predictive=False``
drops this check). It is critical when at least half the window's runs failed or at
least 50 failed, else a warning (decided when it fires). It resolves after 5 consecutive
minutes in which the window no longer meets the rule. While it fires, the window is
judged against the baseline of the moment it fired, and the minutes of the incident never
count towards a later baseline, so a long incident does not become the new normal. A run
counts as failed when its status is ``failed`` (a manual stop is not a failure); it is
placed at the minute it finished. A workflow with a few runs an hour can never fire: it
never has 10 runs in 5 minutes.

**Stuck run** (``stuck_run``, one per run). A run is stuck when it has been running for
longer than max(5 minutes, 5 x the 99th percentile of its workflow's recent run
durations). The percentile comes from the durations of the workflow's 500 most recently
finished runs (runs that were themselves reported stuck are left out). Until a workflow
has 20 finished runs its percentile is not trusted and a run of it is stuck after 1 hour
(``cold_floor_seconds``; ``None`` means such runs are not judged at all). Each run fires
at most once (a warning) and resolves when it finishes. A run whose finish arrives before
its start is handled: it is running only between its start and its finish, so a run of
normal length never alerts, whatever order its events come in.

**Queue growing** (``queue_growing``, one per account). The account's pending depth
(runs queued and not yet started) is sampled at the end of every minute. It fires when
the depth grew in each of the last 5 minutes and is at least 50 runs now; it is critical
when at least 500 runs are pending or no run started in those 5 minutes. It resolves after
3 consecutive minutes in which the depth did not grow or was below 50. The alert reports
the depth, the runs running, growth, arrivals, starts and finishes per minute, and how long the
backlog would take to drain (``eta_minutes``: at the current rates, infinite while
arrivals outpace starts; ``drain_minutes``: at the current start rate if arrivals stopped).

Memory is bounded: minute buckets older than the baseline are dropped, workflows and
accounts not seen for a long time are forgotten, duration samples are capped, and the
number of tracked workflows, runs and accounts is capped (oldest evicted first). These caps
are shared by all accounts (a capacity limit, not a clock: an account with very many
workflows or runs can push out another's oldest state, never move its time).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "Alert",
    "EventClocks",
    "Watermark",
    "FailureSpikeDetector",
    "StuckRunDetector",
    "QueueGrowthDetector",
    "Detectors",
    "binomial_tail",
    "beta_binomial_tail",
    "describe",
]

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_MINUTE_MS = 60_000


# --------------------------------------------------------------------------- helpers


def _ms(value: datetime, what: str = "time") -> int:
    """Milliseconds since the epoch of an aware datetime (exact integer arithmetic)."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be a timezone-aware datetime, got {value!r}")
    return (value - _EPOCH) // _MS


def _dt(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


Watermark = datetime | Mapping[str, datetime]  # one time for every account, or one per account


def _targets(watermark: Watermark, known: Mapping[str, object]) -> tuple[list[tuple[str, int]], int | None]:
    """(account, watermark ms) pairs to advance, and the common watermark in ms when one time
    was given for every account (None for a per-account mapping)."""
    if isinstance(watermark, Mapping):
        return [(account, _ms(w, "watermark")) for account, w in watermark.items()], None
    w = _ms(watermark, "watermark")
    return [(account, w) for account in list(known)], w


def _common_floor(floor: int | None, candidate: int, accounts) -> int | None:
    """After a watermark common to every account (the single-clock mode): where accounts not
    started yet start, and accounts seen later, so that late data below it counts as late
    exactly as with one clock. Set once any account has started."""
    if floor is None and all(a.next is None for a in accounts):
        return None
    floor = candidate if floor is None else max(floor, candidate)
    for a in accounts:
        if a.next is None:
            a.next = floor
    return floor


def _alert_id(kind: str, account_id: str, subject: str, started_at: datetime) -> str:
    return f"{kind}:{account_id}:{subject}:{started_at:%Y%m%dT%H%M}"


def _fmt_minutes(minutes: float) -> str:
    if minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    return f"{minutes:g} min"


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "forever"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3570:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(int(round(seconds / 60)), 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _fmt_chance(p: float) -> str:
    """1e-4 -> "1 in 10,000"."""
    if 0 < p < 1:
        inv = 1 / p
        if abs(inv - round(inv)) < 1e-6 * inv:
            return f"1 in {round(inv):,}"
    return f"{p:g}"


def _fmt_pct(rate: float) -> str:
    pct = 100.0 * rate
    if pct >= 10 or pct == 0:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%"


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), computed in log space (exact up to rounding).

    Sums the terms from the side where they decrease away from ``k``, so it needs few
    terms; returns values down to the smallest positive float (smaller ones are 0.0)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    odds = p / (1.0 - p)
    lgn = math.lgamma(n + 1)

    def log_pmf(i: int) -> float:
        return lgn - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq

    mode = math.floor((n + 1) * p)
    if k > mode:
        # upper tail: terms decrease from k upwards
        total = term = 1.0
        i = k
        while i < n:
            term *= (n - i) / (i + 1) * odds
            total += term
            i += 1
            if term <= total * 1e-17:
                break
        log_tail = log_pmf(k) + math.log(total)
        return min(1.0, math.exp(log_tail)) if log_tail > -745 else 0.0
    # lower tail P(X <= k - 1): terms decrease from k - 1 downwards
    total = term = 1.0
    i = k - 1
    while i > 0:
        term *= i / (n - i + 1) / odds
        total += term
        i -= 1
        if term <= total * 1e-17:
            break
    lower = math.exp(log_pmf(k - 1)) * total
    return min(1.0, max(0.0, 1.0 - lower))


def beta_binomial_tail(k: int, n: int, a: float, b: float) -> float:
    """P(X >= k) for X ~ BetaBinomial(n, a, b): failures among n runs when the failure rate
    itself is only known as Beta(a, b) (e.g. the posterior of a baseline). Heavier-tailed
    than the binomial with p = a / (a + b); equal to it as a + b grows."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if a <= 0.0:
        return 0.0
    if b <= 0.0:
        return 1.0
    lg = math.lgamma
    log_term = (lg(n + 1) - lg(k + 1) - lg(n - k + 1) + lg(k + a) + lg(n - k + b) - lg(n + a + b)
                + lg(a + b) - lg(a) - lg(b))
    total = term = 1.0
    i = k
    while i < n:
        ratio = (n - i) / (i + 1) * (i + a) / (n - i - 1 + b)
        term *= ratio
        total += term
        i += 1
        if ratio < 1.0 and term <= total * 1e-17:
            break
    log_tail = log_term + math.log(total)
    return min(1.0, math.exp(log_tail)) if log_tail > -745 else 0.0


# --------------------------------------------------------------------------- the alert


@dataclass(frozen=True)
class Alert:
    alert_id: str  # f"{kind}:{account_id}:{subject}:{started_at:%Y%m%dT%H%M}", same when firing and resolved
    kind: str  # "failure_spike" | "stuck_run" | "queue_growing"
    account_id: str
    subject: str  # workflow_id (failure_spike; account_id with scope="account"), run_id (stuck_run), account_id (queue_growing)
    subject_name: str  # workflow name / the run's workflow name / account id, for humans
    state: str  # "firing" | "resolved"
    severity: str  # "warning" | "critical"
    started_at: datetime  # event time the condition began (aware UTC)
    resolved_at: datetime | None
    summary: str  # one readable sentence with the numbers
    numbers: dict[str, float] = field(default_factory=dict)  # the figures behind it


# --------------------------------------------------------------------------- failure spikes


class _SpikeState:
    __slots__ = ("account_id", "subject", "name", "buckets", "excluded", "firing")

    def __init__(self, account_id: str, subject: str, name: str) -> None:
        self.account_id = account_id
        self.subject = subject
        self.name = name
        self.buckets: dict[int, list[int]] = {}  # minute -> [runs, failures]
        self.excluded: set[int] = set()  # minutes that must not feed the baseline (the alert was firing)
        self.firing: _SpikeFiring | None = None


class _SpikeAccount:
    """One account's progress through event time (per detector) and its keys."""

    __slots__ = ("next", "first", "active", "minutes", "firing", "keys", "last_sweep")

    def __init__(self, next_minute: int | None) -> None:
        self.next = next_minute  # next minute to evaluate (None: not started)
        self.first: int | None = None  # earliest minute observed before the first evaluation
        self.active: dict[int, set[tuple[str, str]]] = {}  # minute -> keys observed at it
        self.minutes: list[int] = []  # heap of the minutes in ``active`` (may repeat one)
        self.firing: dict[tuple[str, str], _SpikeState] = {}
        self.keys: set[tuple[str, str]] = set()
        self.last_sweep = -(1 << 62)


class _SpikeFiring:
    __slots__ = ("alert_id", "started_ms", "severity", "clear_streak", "clear_since_ms", "peak_rate",
                 "peak_failures", "peak_runs", "minutes", "base_runs", "base_failures")

    def __init__(self, alert_id: str, started_ms: int, severity: str) -> None:
        self.alert_id = alert_id
        self.started_ms = started_ms
        self.severity = severity
        self.clear_streak = 0
        self.clear_since_ms = started_ms
        self.peak_rate = 0.0
        self.peak_failures = 0
        self.peak_runs = 0
        self.minutes = 0
        self.base_runs = 0
        self.base_failures = 0


def _lru_account(accounts: OrderedDict[str, Any], account_id: str, cap: int, idle: Callable[[Any], bool],
                 forget: Callable[[Any], None], new: Callable[[], Any]) -> Any:
    """``accounts[account_id]``, most recently used last; a new one evicts the least recently
    used idle account (or, if none is idle, the least recently used) once ``cap`` are held."""
    acct = accounts.get(account_id)
    if acct is not None:
        accounts.move_to_end(account_id)
        return acct
    if len(accounts) >= cap:
        old_id = next((key for key, old in accounts.items() if idle(old)), next(iter(accounts)))
        forget(accounts.pop(old_id))
    acct = accounts[account_id] = new()
    return acct


class FailureSpikeDetector:
    """Failure spikes per workflow (``scope="workflow"``, the default) or per account
    (``scope="account"``: all of an account's workflows together; subject and subject_name
    are then the account id). See the module docstring for the rule.

    ``prior_strength`` is the weight, in runs, of the Beta prior around ``prior_rate`` that
    smooths the baseline (Beta(prior_rate * s, (1 - prior_rate) * s)). ``max_keys`` caps the
    workflows (or accounts) tracked at once; the least recently observed one is forgotten
    first (a firing one only if every tracked key is firing). Observations older than the
    oldest minute any future evaluation can use are dropped (counted in ``stats``)."""

    kind = "failure_spike"

    def __init__(self, *, window_minutes: int = 5, baseline_minutes: int = 120, min_runs: int = 10,
                 min_failures: int = 5, min_ratio: float = 3.0, max_p_value: float = 1e-4,
                 clear_minutes: int = 5, prior_rate: float = 0.02, prior_strength: float = 20.0,
                 scope: str = "workflow", max_keys: int = 100_000, predictive: bool = True,
                 max_accounts: int = 100_000) -> None:
        if scope not in ("workflow", "account"):
            raise ValueError(f"scope must be 'workflow' or 'account', got {scope!r}")
        if window_minutes < 1 or baseline_minutes < 1 or clear_minutes < 1:
            raise ValueError("window_minutes, baseline_minutes and clear_minutes must be >= 1")
        if not 0.0 < prior_rate < 1.0 or prior_strength <= 0:
            raise ValueError("prior_rate must be in (0, 1) and prior_strength > 0")
        if max_keys < 1 or max_accounts < 1:
            raise ValueError("max_keys and max_accounts must be >= 1")
        self.window_minutes = int(window_minutes)
        self.baseline_minutes = int(baseline_minutes)
        self.min_runs = int(min_runs)
        self.min_failures = int(min_failures)
        self.min_ratio = float(min_ratio)
        self.max_p_value = float(max_p_value)
        self.clear_minutes = int(clear_minutes)
        self.prior_rate = float(prior_rate)
        self.prior_strength = float(prior_strength)
        self.scope = scope
        self.max_keys = int(max_keys)
        self.predictive = bool(predictive)
        self._alpha = self.prior_rate * self.prior_strength
        self._beta = (1.0 - self.prior_rate) * self.prior_strength
        self.max_accounts = int(max_accounts)
        self._keys: OrderedDict[tuple[str, str], _SpikeState] = OrderedDict()  # LRU by observation
        self._accounts: OrderedDict[str, _SpikeAccount] = OrderedDict()  # per-account clock and index, LRU
        self._floor: int | None = None  # where a new account starts after a common watermark
        # judged_minutes: (key, minute) evaluations whose window had >= min_runs runs
        # evaluated_minutes: (account, minute) evaluations, whatever their data (the cost of advancing)
        self.stats = {"observed": 0, "dropped_too_late": 0, "evicted_keys": 0, "judged_minutes": 0,
                      "evicted_accounts": 0, "evaluated_minutes": 0}

    # ---- input

    def observe(self, account_id: str, workflow_id: str, workflow_name: str, finished_at: datetime,
                failed: bool) -> None:
        """One finished run (each run exactly once; the caller deduplicates). May arrive out
        of order and late by up to the caller's lateness."""
        minute = _ms(finished_at, "finished_at") // _MINUTE_MS
        acct = self._account(account_id)
        if acct.next is not None and minute <= acct.next - self.window_minutes - self.baseline_minutes:
            self.stats["dropped_too_late"] += 1
            return
        if self.scope == "account":
            key = (account_id, account_id)
            name = account_id
        else:
            key = (account_id, workflow_id)
            name = workflow_name or workflow_id
        keys = self._keys
        st = keys.get(key)
        if st is None:
            if len(keys) >= self.max_keys:
                self._evict_one()
            st = keys[key] = _SpikeState(account_id, key[1], name)
            acct.keys.add(key)
        else:
            keys.move_to_end(key)
            if name:
                st.name = name
        bucket = st.buckets.get(minute)
        if bucket is None:
            st.buckets[minute] = [1, 1 if failed else 0]
        else:
            bucket[0] += 1
            if failed:
                bucket[1] += 1
        active = acct.active.get(minute)
        if active is None:
            acct.active[minute] = {key}
            heapq.heappush(acct.minutes, minute)
        else:
            active.add(key)
        if acct.next is None and (acct.first is None or minute < acct.first):
            acct.first = minute
        self.stats["observed"] += 1

    def _account(self, account_id: str) -> _SpikeAccount:
        """The account's clock and index (created at the common floor, if any; LRU-capped)."""
        return _lru_account(self._accounts, account_id, self.max_accounts, lambda old: not old.firing,
                            self._forget_account, lambda: _SpikeAccount(self._floor))

    def _forget_account(self, old: _SpikeAccount) -> None:
        for key in old.keys:  # its alerts are never resolved
            if self._keys.pop(key, None) is not None:
                self.stats["evicted_keys"] += 1
        self.stats["evicted_accounts"] += 1

    def _evict_one(self) -> None:
        for key, st in self._keys.items():
            if st.firing is None:
                break
        else:
            key = next(iter(self._keys))
        del self._keys[key]
        acct = self._accounts.get(key[0])
        if acct is not None:
            acct.keys.discard(key)
            acct.firing.pop(key, None)  # an evicted firing alert is never resolved
        self.stats["evicted_keys"] += 1

    # ---- evaluation

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Evaluate every whole minute that ends at or before the watermark and was not
        evaluated yet; return the alerts that started firing or resolved, each once, by minute,
        account and subject. ``watermark`` is one time for every account, or a mapping
        ``{account_id: time}`` that moves only those accounts' clocks (see ``EventClocks``)."""
        targets, common = _targets(watermark, self._accounts)
        out: list[tuple[int, tuple[str, str], Alert]] = []
        for account_id, w in targets:
            acct = self._accounts.get(account_id)
            if acct is not None:
                self._advance_account(acct, w // _MINUTE_MS - 1, out)
        if common is not None:
            self._floor = _common_floor(self._floor, common // _MINUTE_MS, self._accounts.values())
        out.sort(key=lambda x: (x[0], x[1]))
        return [alert for _, _, alert in out]

    def _advance_account(self, acct: _SpikeAccount, last: int,
                         out: list[tuple[int, tuple[str, str], Alert]]) -> None:
        """Evaluate the account's minutes up to ``last`` (its last complete minute). Only minutes
        whose window holds data, or while an alert fires, cost anything: the rest are skipped."""
        if acct.next is None:
            if acct.first is None or acct.first > last:
                return
            acct.next = acct.first
        W = self.window_minutes
        active, heap = acct.active, acct.minutes
        while acct.next <= last:
            m = acct.next
            self.stats["evaluated_minutes"] += 1
            candidates: set[tuple[str, str]] = set(acct.firing)
            for i in range(m - W + 1, m + 1):
                keys = active.get(i)
                if keys:
                    candidates.update(keys)
            for key in sorted(candidates):
                st = self._keys.get(key)
                if st is not None:
                    alert = self._evaluate(st, acct, key, m)
                    if alert is not None:
                        out.append((m, key, alert))
            acct.next = m + 1
            lo = m + 1 - W
            while heap and heap[0] < lo:
                active.pop(heapq.heappop(heap), None)
            if m - acct.last_sweep >= 15:
                self._sweep(acct, m)
            if not candidates and not acct.firing:
                # nothing can fire before the next minute that has data: jump there
                acct.next = max(m + 1, min(heap[0] if heap else last + 1, last + 1))
        if acct.next - 1 - acct.last_sweep >= 15:
            self._sweep(acct, acct.next - 1)

    def _sweep(self, acct: _SpikeAccount, m: int) -> None:
        """Drop the account's buckets no evaluation after minute m can use; forget its keys
        with nothing left."""
        acct.last_sweep = m
        horizon = m + 1 - self.window_minutes - self.baseline_minutes
        dead = []
        for key in acct.keys:
            st = self._keys.get(key)
            if st is None:
                dead.append(key)
                continue
            b = st.buckets
            for minute in [i for i in b if i < horizon]:
                del b[minute]
            if st.excluded:
                st.excluded = {i for i in st.excluded if i >= horizon}
            if not b and st.firing is None:
                dead.append(key)
        for key in dead:
            acct.keys.discard(key)
            self._keys.pop(key, None)

    def _rolling_baseline(self, st: _SpikeState, m: int) -> tuple[int, int]:
        """(runs, failures) of the baseline minutes before minute m's window, firing minutes left out."""
        W, B = self.window_minutes, self.baseline_minutes
        buckets, excluded = st.buckets, st.excluded
        bn = bf = 0
        for i in range(m - W - B + 1, m - W + 1):
            x = buckets.get(i)
            if x is not None and i not in excluded:
                bn += x[0]
                bf += x[1]
        return bn, bf

    def _evaluate(self, st: _SpikeState, acct: _SpikeAccount, key: tuple[str, str], m: int) -> Alert | None:
        W, B = self.window_minutes, self.baseline_minutes
        buckets = st.buckets
        n = f = 0
        for i in range(m - W + 1, m + 1):
            x = buckets.get(i)
            if x is not None:
                n += x[0]
                f += x[1]
        fs = st.firing
        meets = False
        numbers: dict[str, float] | None = None
        if n >= self.min_runs:
            self.stats["judged_minutes"] += 1
        if n >= self.min_runs and f >= self.min_failures:
            # while firing, judge against the baseline frozen when the alert fired: the
            # incident's minutes never feed it, however long the incident lasts
            bn, bf = self._rolling_baseline(st, m) if fs is None else (fs.base_runs, fs.base_failures)
            base = (bf + self._alpha) / (bn + self._alpha + self._beta)
            rate = f / n
            if rate >= self.min_ratio * base:
                p_value = binomial_tail(f, n, base)
                meets = p_value <= self.max_p_value
                p_pred = math.nan
                if meets and self.predictive:
                    p_pred = beta_binomial_tail(f, n, bf + self._alpha, bn - bf + self._beta)
                    meets = p_pred <= self.max_p_value
                numbers = {
                    "window_runs": float(n), "window_failures": float(f), "window_rate": rate,
                    "baseline_runs": float(bn), "baseline_failures": float(bf), "baseline_rate": base,
                    "ratio": rate / base, "expected_failures": n * base, "p_value": p_value,
                    "window_minutes": float(W), "baseline_minutes": float(B),
                }
                if p_pred == p_pred:
                    numbers["p_value_predictive"] = p_pred
        end_ms = (m + 1) * _MINUTE_MS
        if fs is None:
            if meets:
                assert numbers is not None
                started = _dt(end_ms)
                severity = "critical" if (numbers["window_rate"] >= 0.5 or f >= 50) else "warning"
                alert_id = _alert_id(self.kind, st.account_id, st.subject, started)
                fs = st.firing = _SpikeFiring(alert_id, end_ms, severity)
                fs.peak_rate, fs.peak_failures, fs.peak_runs, fs.minutes = numbers["window_rate"], f, n, 1
                fs.base_runs, fs.base_failures = int(numbers["baseline_runs"]), int(numbers["baseline_failures"])
                acct.firing[key] = st
                st.excluded.update(range(m - W + 1, m + 1))
                return Alert(alert_id, self.kind, st.account_id, st.subject, st.name, "firing", severity,
                             started, None, self._summary(st, numbers, firing=True), numbers)
            return None
        # firing: this minute never feeds the baseline
        st.excluded.add(m)
        fs.minutes += 1
        if meets:
            assert numbers is not None
            fs.clear_streak = 0
            if numbers["window_rate"] > fs.peak_rate:
                fs.peak_rate = numbers["window_rate"]
            if f > fs.peak_failures:
                fs.peak_failures, fs.peak_runs = f, n
            return None
        fs.clear_streak += 1
        if fs.clear_streak == 1:
            fs.clear_since_ms = end_ms
        if fs.clear_streak < self.clear_minutes:
            return None
        # resolved: report the window now, against the baseline the alert was judged on
        bn, bf = fs.base_runs, fs.base_failures
        base = (bf + self._alpha) / (bn + self._alpha + self._beta)
        numbers = {
            "window_runs": float(n), "window_failures": float(f), "window_rate": (f / n) if n else 0.0,
            "baseline_runs": float(bn), "baseline_failures": float(bf), "baseline_rate": base,
            "peak_window_rate": fs.peak_rate, "peak_window_failures": float(fs.peak_failures),
            "peak_window_runs": float(fs.peak_runs), "firing_minutes": float(fs.minutes),
            "window_minutes": float(W), "baseline_minutes": float(B),
        }
        st.firing = None
        acct.firing.pop(key, None)
        return Alert(fs.alert_id, self.kind, st.account_id, st.subject, st.name, "resolved", fs.severity,
                     _dt(fs.started_ms), _dt(fs.clear_since_ms), self._summary(st, numbers, firing=False), numbers)

    def _label(self, st: _SpikeState) -> str:
        if self.scope == "account":
            return f"{st.account_id} (all workflows)"
        return f"{st.name} ({st.account_id})"

    def _summary(self, st: _SpikeState, x: dict[str, float], *, firing: bool) -> str:
        n, f = int(x["window_runs"]), int(x["window_failures"])
        window = _fmt_minutes(self.window_minutes)
        base = f"baseline {_fmt_pct(x['baseline_rate'])} over {_fmt_minutes(self.baseline_minutes)}"
        if firing:
            return (f"{self._label(st)}: {f} of {n} runs failed in the last {window} "
                    f"({_fmt_pct(x['window_rate'])}), {base} (p={x['p_value']:.1g})")
        return (f"{self._label(st)}: failure rate back to normal, {f} of {n} runs failed in the last {window} "
                f"({_fmt_pct(x['window_rate'])}), {base}; peak was {int(x['peak_window_failures'])} of "
                f"{int(x['peak_window_runs'])} ({_fmt_pct(x['peak_window_rate'])})")

    def state_sizes(self) -> dict[str, int]:
        return {
            "keys": len(self._keys),
            "buckets": sum(len(st.buckets) for st in self._keys.values()),
            "excluded_minutes": sum(len(st.excluded) for st in self._keys.values()),
            "active_minutes": sum(len(a.active) for a in self._accounts.values()),
            "firing": sum(len(a.firing) for a in self._accounts.values()),
        }

    def describe(self) -> str:
        scope = "each account, all its workflows together" if self.scope == "account" else "each workflow"
        predictive = (", and still is once the uncertainty of the baseline rate itself is allowed for "
                      "(beta-binomial test)") if self.predictive else ""
        return (
            f"Failure spike ({scope}): every minute, compare the last {_fmt_minutes(self.window_minutes)} "
            f"with the {_fmt_minutes(self.baseline_minutes)} before them (the baseline rate is smoothed as if "
            f"{self.prior_strength:g} more runs with a {_fmt_pct(self.prior_rate)} failure rate had been seen). "
            f"Fire when the window has >= {self.min_runs} finished runs and >= {self.min_failures} failures, its "
            f"failure rate is >= {self.min_ratio:g}x the baseline rate, and the chance of that many failures at "
            f"the baseline rate is at most {_fmt_chance(self.max_p_value)} (one-sided binomial test){predictive}. "
            f"Critical when >= 50% of the window's runs or >= 50 runs failed (decided when it fires). Resolve "
            f"after {self.clear_minutes} consecutive minutes without the condition. While firing, the window is "
            f"judged against the baseline of the moment the alert fired, and the incident's minutes never enter "
            f"a later baseline."
        )


# --------------------------------------------------------------------------- stuck runs


class _Run:
    __slots__ = ("account_id", "workflow_id", "started_ms", "finished_ms", "fired")

    def __init__(self, account_id: str, workflow_id: str) -> None:
        self.account_id = account_id
        self.workflow_id = workflow_id
        self.started_ms: int | None = None
        self.finished_ms: int | None = None
        self.fired: Alert | None = None


class _Durations:
    __slots__ = ("name", "samples", "sorted")

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.samples: deque[int] = deque(maxlen=size)  # durations in ms, oldest finish first
        self.sorted: list[int] | None = None


class _StuckAccount:
    """One account's progress through event time (per detector) and its pending work."""

    __slots__ = ("account_id", "next", "first", "due", "finishes", "parked")

    def __init__(self, account_id: str, next_tick: int | None) -> None:
        self.account_id = account_id
        self.next = next_tick  # next minute boundary (ms) to evaluate (None: not started)
        self.first: int | None = None  # earliest time observed before the first evaluation
        self.due: list[tuple[int, int, tuple[str, str]]] = []  # (check at ms, started ms, run); lazy deletion
        self.finishes: list[tuple[int, tuple[str, str], int, str]] = []  # (finish ms, run, duration ms, wf)
        self.parked: dict[str, dict[tuple[str, str], int]] = {}  # workflow -> runs waiting for a threshold


class StuckRunDetector:
    """Runs that have been running far longer than their workflow usually takes.

    A run is running at a minute boundary T when its start is <= T and its finish is
    unknown or > T, so the events of a run may arrive in any order (a finish before its
    start included) and give the same result. Durations enter a workflow's sample when
    the watermark passes their finish, in finish-time order, so the percentile at T does
    not depend on arrival order either. With fewer than ``min_samples`` durations the
    threshold is ``max(floor_seconds, cold_floor_seconds)``, or the run is not judged when
    ``cold_floor_seconds`` is None (until its workflow has enough). ``max_open_runs`` caps
    the runs tracked (oldest started evicted first, counted in ``stats``); finished runs are
    remembered for ``tombstone_seconds`` of their account's event time so a start arriving
    after its finish is ignored. Each account's runs are judged by that account's watermark
    only; boundaries where nothing is due are skipped."""

    kind = "stuck_run"

    def __init__(self, *, factor: float = 5.0, min_samples: int = 20, floor_seconds: float = 300.0,
                 max_open_runs: int = 200_000, sample_size: int = 500, quantile: float = 0.99,
                 cold_floor_seconds: float | None = 3600.0, max_workflows: int = 50_000,
                 tombstone_seconds: float = 6 * 3600.0, max_accounts: int = 100_000) -> None:
        if factor <= 0 or floor_seconds < 0 or min_samples < 1 or sample_size < min_samples:
            raise ValueError("need factor > 0, floor_seconds >= 0, 1 <= min_samples <= sample_size")
        if max_open_runs < 1 or max_workflows < 1 or max_accounts < 1 or not 0.0 < quantile <= 1.0:
            raise ValueError("need max_open_runs, max_workflows, max_accounts >= 1 and 0 < quantile <= 1")
        self.factor = float(factor)
        self.min_samples = int(min_samples)
        self.floor_seconds = float(floor_seconds)
        self.max_open_runs = int(max_open_runs)
        self.sample_size = int(sample_size)
        self.quantile = float(quantile)
        self.cold_floor_seconds = None if cold_floor_seconds is None else float(cold_floor_seconds)
        self.max_workflows = int(max_workflows)
        self.tombstone_seconds = float(tombstone_seconds)
        self.max_accounts = int(max_accounts)
        self._floor_ms = int(self.floor_seconds * 1000)
        # runs are keyed by (account_id, run_id)
        self._runs: OrderedDict[tuple[str, str], _Run] = OrderedDict()  # open (or finish not yet passed)
        self._done: OrderedDict[tuple[str, str], int] = OrderedDict()  # closed runs -> finish ms
        self._workflows: OrderedDict[tuple[str, str], _Durations] = OrderedDict()
        self._accounts: OrderedDict[str, _StuckAccount] = OrderedDict()  # LRU by observation
        self._floor: int | None = None  # where a new account starts after a common watermark (ms)
        self._due_entries = 0  # sum of the accounts' due heaps
        # ticks: (account, minute boundary) evaluations (the cost of advancing)
        self.stats = {"evicted_open_runs": 0, "evicted_workflows": 0, "ignored_start_after_finish": 0,
                      "evicted_accounts": 0, "ticks": 0}

    # ---- input

    def _wf(self, account_id: str, workflow_id: str, name: str | None) -> _Durations:
        key = (account_id, workflow_id)
        d = self._workflows.get(key)
        if d is None:
            if len(self._workflows) >= self.max_workflows:
                self._workflows.popitem(last=False)
                self.stats["evicted_workflows"] += 1
            d = self._workflows[key] = _Durations(name or workflow_id, self.sample_size)
        else:
            self._workflows.move_to_end(key)
            if name:
                d.name = name
        return d

    def _account(self, account_id: str) -> _StuckAccount:
        return _lru_account(self._accounts, account_id, self.max_accounts,
                            lambda old: not old.due and not old.finishes, self._forget_account,
                            lambda: _StuckAccount(account_id, self._floor))

    def _forget_account(self, old: _StuckAccount) -> None:
        self._due_entries -= len(old.due)   # its open runs are no longer judged (evicted later by the run cap)
        self.stats["evicted_accounts"] += 1

    @staticmethod
    def _touch_first(acct: _StuckAccount, ms: int) -> None:
        if acct.next is None and (acct.first is None or ms < acct.first):
            acct.first = ms

    def _push_due(self, acct: _StuckAccount, at: int, started: int, key: tuple[str, str]) -> None:
        heapq.heappush(acct.due, (at, started, key))
        self._due_entries += 1

    def _new_run(self, key: tuple[str, str], workflow_id: str) -> _Run:
        runs = self._runs
        while len(runs) >= self.max_open_runs:
            runs.popitem(last=False)  # an evicted stuck run's alert is never resolved
            self.stats["evicted_open_runs"] += 1
        run = runs[key] = _Run(key[0], workflow_id)
        return run

    def run_started(self, account_id: str, workflow_id: str, workflow_name: str, run_id: str,
                    started_at: datetime) -> None:
        s = _ms(started_at, "started_at")
        self._wf(account_id, workflow_id, workflow_name)
        acct = self._account(account_id)
        key = (account_id, run_id)
        if key in self._done:
            self.stats["ignored_start_after_finish"] += 1
            return
        run = self._runs.get(key)
        if run is None:
            run = self._new_run(key, workflow_id)
        elif run.started_ms == s:
            return
        run.started_ms = s  # the run.started event's time wins over a finish's started_at
        self._push_due(acct, s + self._floor_ms, s, key)
        self._touch_first(acct, s)
        self._maybe_compact()

    def run_finished(self, account_id: str, workflow_id: str, run_id: str, started_at: datetime | None,
                     finished_at: datetime) -> None:
        f = _ms(finished_at, "finished_at")
        s_given = None if started_at is None else _ms(started_at, "started_at")
        key = (account_id, run_id)
        if key in self._done:
            return
        self._wf(account_id, workflow_id, None)
        acct = self._account(account_id)
        run = self._runs.get(key)
        if run is None:
            run = self._new_run(key, workflow_id)
            if s_given is not None:
                run.started_ms = s_given
                self._push_due(acct, s_given + self._floor_ms, s_given, key)
        if run.finished_ms is not None:
            return  # a second finish of the same run: the first one counts
        run.finished_ms = f
        start = s_given if s_given is not None else run.started_ms
        duration = -1 if start is None else max(0, f - start)
        heapq.heappush(acct.finishes, (f, key, duration, workflow_id))
        self._touch_first(acct, f)

    def _maybe_compact(self) -> None:
        """Rebuild the due heaps from the open runs once stale entries outnumber them."""
        if self._due_entries <= 2 * len(self._runs) + 1024:
            return
        for acct in self._accounts.values():
            acct.due = []
            acct.parked = {}
        total = 0
        for key, run in self._runs.items():
            if run.started_ms is not None and run.fired is None:
                acct = self._accounts.get(run.account_id)
                if acct is not None:
                    acct.due.append((run.started_ms + self._floor_ms, run.started_ms, key))
                    total += 1
        for acct in self._accounts.values():
            heapq.heapify(acct.due)
        self._due_entries = total

    # ---- thresholds

    def threshold_seconds(self, account_id: str, workflow_id: str) -> float | None:
        """The current stuck threshold of a workflow (None: not judged yet)."""
        ms, _, _ = self._threshold(self._workflows.get((account_id, workflow_id)))
        return None if ms is None else ms / 1000.0

    def _threshold(self, d: _Durations | None) -> tuple[int | None, float, int]:
        """(threshold ms or None, percentile ms, samples)."""
        n = 0 if d is None else len(d.samples)
        if n < self.min_samples:
            if self.cold_floor_seconds is None:
                return None, math.nan, n
            return int(max(self.floor_seconds, self.cold_floor_seconds) * 1000), math.nan, n
        assert d is not None
        if d.sorted is None:
            d.sorted = sorted(d.samples)
        rank = max(1, math.ceil(self.quantile * n))
        q = d.sorted[rank - 1]
        return max(self._floor_ms, int(math.ceil(self.factor * q))), float(q), n

    # ---- evaluation

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Evaluate every minute boundary up to the watermark not evaluated yet; return the
        stuck alerts that started firing or resolved (by boundary: resolutions, then new
        alerts, each by time, account and run). ``watermark`` is one time for every account or
        a mapping ``{account_id: time}`` that moves only those accounts' clocks."""
        targets, common = _targets(watermark, self._accounts)
        out: list[tuple[int, int, tuple, Alert]] = []
        for account_id, w in targets:
            acct = self._accounts.get(account_id)
            if acct is not None:
                self._advance_account(acct, (w // _MINUTE_MS) * _MINUTE_MS, out)
        if common is not None:
            self._floor = _common_floor(self._floor, (common // _MINUTE_MS + 1) * _MINUTE_MS,
                                        self._accounts.values())
        out.sort(key=lambda x: x[:3])
        return [alert for *_, alert in out]

    def _advance_account(self, acct: _StuckAccount, last_tick: int, out: list) -> None:
        if acct.next is None:
            if acct.first is None:
                return
            acct.next = (acct.first // _MINUTE_MS + 1) * _MINUTE_MS
        while acct.next <= last_tick:
            T = acct.next
            self.stats["ticks"] += 1
            self._tick(acct, T, out)
            # jump to the next boundary where something can happen
            # (never beyond the first boundary after the watermark: later input may be due earlier)
            nxt = last_tick + _MINUTE_MS
            pending = [h[0][0] for h in (acct.due, acct.finishes) if h]
            if pending:
                nxt = min(nxt, -(-min(pending) // _MINUTE_MS) * _MINUTE_MS)
            acct.next = max(T + _MINUTE_MS, nxt)

    def _clock_of(self, account_id: str) -> int:
        """The last minute boundary the account's watermark passed (ms)."""
        acct = self._accounts.get(account_id)
        if acct is None:
            return 1 << 62  # forgotten: so are its closed runs
        return -(1 << 62) if acct.next is None else acct.next - _MINUTE_MS

    def _tick(self, acct: _StuckAccount, T: int, out: list) -> None:
        runs = self._runs
        # 1. finishes at or before T: durations into samples, resolve stuck runs, close runs
        fin = acct.finishes
        while fin and fin[0][0] <= T:
            f, key, duration, workflow_id = heapq.heappop(fin)
            account_id, run_id = key
            run = runs.pop(key, None)
            fired = run.fired if run is not None else None
            parked = acct.parked.get(workflow_id)
            if parked:
                parked.pop(key, None)
            if duration >= 0 and fired is None:
                d = self._workflows.get((account_id, workflow_id))
                if d is not None:
                    d.samples.append(duration)
                    d.sorted = None
                    if parked:  # the workflow's threshold may be known now
                        for waiting, started in parked.items():
                            self._push_due(acct, T, started, waiting)
                        del acct.parked[workflow_id]
            if fired is not None:
                numbers = dict(fired.numbers)
                if duration >= 0:
                    numbers["duration_seconds"] = duration / 1000.0
                    took = f"finished after {_fmt_duration(duration / 1000.0)}"
                else:
                    took = "finished"
                summary = (f"{fired.subject_name} ({fired.account_id}): run {run_id} {took} "
                           f"(stuck threshold {_fmt_duration(numbers['threshold_seconds'])})")
                alert = Alert(fired.alert_id, self.kind, fired.account_id, fired.subject, fired.subject_name,
                              "resolved", fired.severity, fired.started_at, _dt(f), summary, numbers)
                out.append((T, 0, (alert.resolved_at, alert.account_id, alert.subject), alert))
            self._done[key] = f
        # forget closed runs after a while (each by its own account's clock)
        done = self._done
        ttl = int(self.tombstone_seconds * 1000)
        while done:
            (account_id, _), f = next(iter(done.items()))
            clock = T if account_id == acct.account_id else self._clock_of(account_id)
            if f + ttl < clock or len(done) > self.max_open_runs:
                done.popitem(last=False)
            else:
                break
        # 2. runs due for a check
        due = acct.due
        while due and due[0][0] <= T:
            _, started, key = heapq.heappop(due)
            self._due_entries -= 1
            run_id = key[1]
            run = runs.get(key)
            if run is None or run.fired is not None or run.started_ms != started:
                continue  # stale entry
            if run.finished_ms is not None and run.finished_ms <= T:
                continue  # finished (closed at its finish tick)
            d = self._workflows.get((run.account_id, run.workflow_id))
            threshold, q, n = self._threshold(d)
            if threshold is None:
                # not judged until the workflow has enough finished runs: wait for one
                acct.parked.setdefault(run.workflow_id, {})[key] = started
                continue
            stuck_at = started + threshold
            if T - started <= threshold:
                self._push_due(acct, stuck_at + 1, started, key)
                continue
            name = d.name if d is not None else run.workflow_id
            began = _dt(stuck_at)
            running_s = (T - started) / 1000.0
            numbers = {
                "running_seconds": running_s, "threshold_seconds": threshold / 1000.0,
                "samples": float(n), "factor": self.factor, "floor_seconds": self.floor_seconds,
                "run_started_epoch_s": started / 1000.0,
            }
            if n >= self.min_samples:
                numbers["p99_seconds"] = q / 1000.0  # the configured quantile (p99 by default)
                why = (f"{self.factor:g} x p{self.quantile * 100:g} of {_fmt_duration(q / 1000.0)} over "
                       f"{n} recent runs")
            else:
                why = f"only {n} finished runs known, so the {_fmt_duration(threshold / 1000.0)} cold-start limit"
            summary = (f"{name} ({run.account_id}): run {run_id} has been running for {_fmt_duration(running_s)}, "
                       f"over the {_fmt_duration(threshold / 1000.0)} stuck threshold ({why})")
            alert = Alert(_alert_id(self.kind, run.account_id, run_id, began), self.kind, run.account_id, run_id,
                          name, "firing", "warning", began, None, summary, numbers)
            run.fired = alert
            out.append((T, 1, (alert.started_at, alert.account_id, alert.subject), alert))

    def state_sizes(self) -> dict[str, int]:
        return {
            "runs": len(self._runs),
            "closed_runs": len(self._done),
            "due_heap": sum(len(a.due) for a in self._accounts.values()),
            "finish_heap": sum(len(a.finishes) for a in self._accounts.values()),
            "workflows": len(self._workflows),
            "samples": sum(len(d.samples) for d in self._workflows.values()),
            "firing": sum(1 for r in self._runs.values() if r.fired is not None),
        }

    def describe(self) -> str:
        cold = ("not judged" if self.cold_floor_seconds is None else
                f"stuck after {_fmt_duration(max(self.floor_seconds, self.cold_floor_seconds))}")
        return (
            f"Stuck run: a run is stuck once it has been running longer than max("
            f"{_fmt_duration(self.floor_seconds)}, {self.factor:g} x the p{self.quantile * 100:g} duration of its "
            f"workflow's last {self.sample_size} finished runs). Until the workflow has {self.min_samples} finished "
            f"runs, its runs are {cold}. Fires once per run (warning), resolves when the run finishes."
        )


# --------------------------------------------------------------------------- queue growth


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


class _QueueFiring:
    __slots__ = ("alert_id", "started_ms", "severity", "clear_streak", "clear_since_ms", "peak_pending")

    def __init__(self, alert_id: str, started_ms: int, severity: str, pending: int) -> None:
        self.alert_id = alert_id
        self.started_ms = started_ms
        self.severity = severity
        self.clear_streak = 0
        self.clear_since_ms = started_ms
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
        if growth_minutes < 1 or clear_minutes < 1 or max_accounts < 1:
            raise ValueError("growth_minutes, clear_minutes and max_accounts must be >= 1")
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
                for key, old in accounts.items():
                    if old.firing is None:
                        break
                else:
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
            fs.clear_streak = 0
            return None
        fs.clear_streak += 1
        if fs.clear_streak == 1:
            fs.clear_since_ms = end_ms
        if fs.clear_streak < self.clear_minutes:
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


# --------------------------------------------------------------------------- event-time clocks


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


# --------------------------------------------------------------------------- facade


def _parse_ts(value) -> datetime:
    if isinstance(value, datetime):
        return value
    dt = datetime.fromisoformat(str(value).replace("z", "Z").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return dt


_DEFAULT = object()


class Detectors:
    """All detectors together: failure spikes per workflow, failure spikes per account,
    stuck runs, queue growth. ``advance`` returns their alerts concatenated in that order
    (within one detector: by minute evaluated, then account and subject). Each argument
    defaults to a detector with the default thresholds (``account_failure_spike``: a
    ``FailureSpikeDetector(scope="account")``); pass ``None`` to leave a detector out."""

    def __init__(self, *, failure_spike=_DEFAULT, account_failure_spike=_DEFAULT, stuck_run=_DEFAULT,
                 queue_growth=_DEFAULT) -> None:
        if failure_spike is _DEFAULT:
            failure_spike = FailureSpikeDetector()
        if account_failure_spike is _DEFAULT:
            account_failure_spike = FailureSpikeDetector(scope="account")
        if stuck_run is _DEFAULT:
            stuck_run = StuckRunDetector()
        if queue_growth is _DEFAULT:
            queue_growth = QueueGrowthDetector()
        if account_failure_spike is not None and account_failure_spike.scope != "account":
            raise ValueError("account_failure_spike needs scope='account'")
        self.failure_spike = failure_spike
        self.account_failure_spike = account_failure_spike
        self.stuck_run = stuck_run
        self.queue_growth = queue_growth

    def observe_event(self, event: Mapping) -> None:
        """Feed one contract event (a dict as in ``shared/event-contract.md``; deduplicated by
        the caller). Step events are ignored. A run counts as failed when its status is
        ``failed``."""
        typ = event.get("type")
        if typ not in ("run.queued", "run.started", "run.finished"):
            return
        account, ts = event["account_id"], _parse_ts(event["ts"])
        if typ == "run.queued":
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, 1, 0)
        elif typ == "run.started":
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, -1, 1)
            if self.stuck_run is not None:
                self.stuck_run.run_started(account, event["workflow_id"], event.get("workflow_name") or "",
                                           event["run_id"], ts)
        else:
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, 0, -1)
            started = event.get("started_at")
            if self.stuck_run is not None:
                self.stuck_run.run_finished(account, event["workflow_id"], event["run_id"],
                                            None if started is None else _parse_ts(started), ts)
            failed = event.get("status") == "failed"
            name = event.get("workflow_name") or ""
            for det in (self.failure_spike, self.account_failure_spike):
                if det is not None:
                    det.observe(account, event["workflow_id"], name, ts, failed)

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Judge what the watermark passed: one time for every account, or ``{account_id: time}``
        for those accounts only (``EventClocks.moved()``: each account by its own clock)."""
        out: list[Alert] = []
        for det in (self.failure_spike, self.account_failure_spike, self.stuck_run, self.queue_growth):
            if det is not None:
                out.extend(det.advance(watermark))
        return out

    def state_sizes(self) -> dict[str, dict[str, int]]:
        names = ("failure_spike", "account_failure_spike", "stuck_run", "queue_growth")
        return {n: getattr(self, n).state_sizes() for n in names if getattr(self, n) is not None}

    def describe(self) -> str:
        """The rules with the thresholds actually configured, in plain words."""
        parts = [det.describe() for det in (self.failure_spike, self.account_failure_spike, self.stuck_run,
                                            self.queue_growth) if det is not None]
        parts.append("All times are event times: a minute is evaluated once the watermark of its account (the "
                     "latest event time of that account, never ahead of the wall clock by more than a small "
                     "tolerance, minus the allowed lateness) has passed its end; each alert is reported once when "
                     "it starts firing and once when it resolves, with the same alert_id.")
        return "\n\n".join(parts)


def describe() -> str:
    """The rules with their default thresholds, in plain words (for the docs)."""
    return Detectors().describe()
