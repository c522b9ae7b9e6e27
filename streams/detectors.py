"""Alert detectors that run inside the stream worker.

Pure and deterministic: no I/O, no wall clock, no randomness. Time is the *event* time,
advanced by a watermark the caller passes to ``advance`` (the worker passes the largest
event time seen minus its allowed lateness). Every detector evaluates whole minutes: a
minute ``[t, t + 1 min)`` is evaluated once, when the watermark reaches its end, with all
the data whose event time falls before that end. Events that arrive out of order but
before the watermark passes their minute therefore give exactly the same alerts as the
same events in time order. ``advance`` returns state changes only: an alert once when it
starts firing and once when it resolves, with the same ``alert_id`` both times.

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
number of tracked workflows, runs and accounts is capped (oldest evicted first).
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

__all__ = [
    "Alert",
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
                 scope: str = "workflow", max_keys: int = 100_000, predictive: bool = True) -> None:
        if scope not in ("workflow", "account"):
            raise ValueError(f"scope must be 'workflow' or 'account', got {scope!r}")
        if window_minutes < 1 or baseline_minutes < 1 or clear_minutes < 1:
            raise ValueError("window_minutes, baseline_minutes and clear_minutes must be >= 1")
        if not 0.0 < prior_rate < 1.0 or prior_strength <= 0:
            raise ValueError("prior_rate must be in (0, 1) and prior_strength > 0")
        if max_keys < 1:
            raise ValueError("max_keys must be >= 1")
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
        self._keys: OrderedDict[tuple[str, str], _SpikeState] = OrderedDict()  # LRU by observation
        self._active: dict[int, set[tuple[str, str]]] = {}  # minute -> keys observed at it
        self._firing: dict[tuple[str, str], _SpikeState] = {}
        self._next: int | None = None  # next minute to evaluate
        self._first: int | None = None  # earliest minute observed before the first evaluation
        self._last_sweep = -(1 << 62)
        # judged_minutes: (key, minute) evaluations whose window had >= min_runs runs
        self.stats = {"observed": 0, "dropped_too_late": 0, "evicted_keys": 0, "judged_minutes": 0}

    # ---- input

    def observe(self, account_id: str, workflow_id: str, workflow_name: str, finished_at: datetime,
                failed: bool) -> None:
        """One finished run (each run exactly once; the caller deduplicates). May arrive out
        of order and late by up to the caller's lateness."""
        minute = _ms(finished_at, "finished_at") // _MINUTE_MS
        if self._next is not None and minute <= self._next - self.window_minutes - self.baseline_minutes:
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
        active = self._active.get(minute)
        if active is None:
            self._active[minute] = {key}
        else:
            active.add(key)
        if self._next is None and (self._first is None or minute < self._first):
            self._first = minute
        self.stats["observed"] += 1

    def _evict_one(self) -> None:
        for key, st in self._keys.items():
            if st.firing is None:
                break
        else:
            key = next(iter(self._keys))
        del self._keys[key]
        self._firing.pop(key, None)  # an evicted firing alert is never resolved
        self.stats["evicted_keys"] += 1

    # ---- evaluation

    def advance(self, watermark: datetime) -> list[Alert]:
        """Evaluate every whole minute that ends at or before ``watermark`` and was not
        evaluated yet; return the alerts that started firing or resolved, each once."""
        last = _ms(watermark, "watermark") // _MINUTE_MS - 1  # last complete minute
        if self._next is None:
            if self._first is None or self._first > last:
                return []
            self._next = self._first
        out: list[Alert] = []
        W = self.window_minutes
        while self._next <= last:
            m = self._next
            candidates: set[tuple[str, str]] = set(self._firing)
            active = self._active
            for i in range(m - W + 1, m + 1):
                keys = active.get(i)
                if keys:
                    candidates.update(keys)
            for key in sorted(candidates):
                st = self._keys.get(key)
                if st is not None:
                    self._evaluate(st, key, m, out)
            self._next = m + 1
            self._prune_active(m + 1 - W)
            if m - self._last_sweep >= 15:
                self._sweep(m)
                self._last_sweep = m
            if not candidates and not self._firing:
                # nothing can fire before the next minute that has data: jump there
                ahead = [i for i in active if i > m]
                nxt = min(ahead) if ahead else last + 1
                self._next = max(m + 1, min(nxt, last + 1))
        return out

    def _prune_active(self, lo: int) -> None:
        active = self._active
        for i in [i for i in active if i < lo]:
            del active[i]

    def _sweep(self, m: int) -> None:
        """Drop buckets no future evaluation can use; forget keys with nothing left."""
        horizon = m + 1 - self.window_minutes - self.baseline_minutes
        dead = []
        for key, st in self._keys.items():
            b = st.buckets
            for minute in [i for i in b if i < horizon]:
                del b[minute]
            if st.excluded:
                st.excluded = {i for i in st.excluded if i >= horizon}
            if not b and st.firing is None:
                dead.append(key)
        for key in dead:
            del self._keys[key]

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

    def _evaluate(self, st: _SpikeState, key: tuple[str, str], m: int, out: list[Alert]) -> None:
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
                self._firing[key] = st
                st.excluded.update(range(m - W + 1, m + 1))
                out.append(Alert(alert_id, self.kind, st.account_id, st.subject, st.name, "firing", severity,
                                 started, None, self._summary(st, numbers, firing=True), numbers))
            return
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
            return
        fs.clear_streak += 1
        if fs.clear_streak == 1:
            fs.clear_since_ms = end_ms
        if fs.clear_streak < self.clear_minutes:
            return
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
        self._firing.pop(key, None)
        out.append(Alert(fs.alert_id, self.kind, st.account_id, st.subject, st.name, "resolved", fs.severity,
                         _dt(fs.started_ms), _dt(fs.clear_since_ms), self._summary(st, numbers, firing=False),
                         numbers))

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
            "active_minutes": len(self._active),
            "firing": len(self._firing),
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


class StuckRunDetector:
    """Runs that have been running far longer than their workflow usually takes.

    A run is running at a minute boundary T when its start is <= T and its finish is
    unknown or > T, so the events of a run may arrive in any order (a finish before its
    start included) and give the same result. Durations enter a workflow's sample when
    the watermark passes their finish, in finish-time order, so the percentile at T does
    not depend on arrival order either. With fewer than ``min_samples`` durations the
    threshold is ``max(floor_seconds, cold_floor_seconds)``, or the run is not judged when
    ``cold_floor_seconds`` is None. ``max_open_runs`` caps the runs tracked (oldest
    started evicted first, counted in ``stats``); finished runs are remembered for
    ``tombstone_seconds`` of event time so a start arriving after its finish is ignored."""

    kind = "stuck_run"

    def __init__(self, *, factor: float = 5.0, min_samples: int = 20, floor_seconds: float = 300.0,
                 max_open_runs: int = 200_000, sample_size: int = 500, quantile: float = 0.99,
                 cold_floor_seconds: float | None = 3600.0, max_workflows: int = 50_000,
                 tombstone_seconds: float = 6 * 3600.0) -> None:
        if factor <= 0 or floor_seconds < 0 or min_samples < 1 or sample_size < min_samples:
            raise ValueError("need factor > 0, floor_seconds >= 0, 1 <= min_samples <= sample_size")
        if max_open_runs < 1 or max_workflows < 1 or not 0.0 < quantile <= 1.0:
            raise ValueError("need max_open_runs >= 1, max_workflows >= 1, 0 < quantile <= 1")
        self.factor = float(factor)
        self.min_samples = int(min_samples)
        self.floor_seconds = float(floor_seconds)
        self.max_open_runs = int(max_open_runs)
        self.sample_size = int(sample_size)
        self.quantile = float(quantile)
        self.cold_floor_seconds = None if cold_floor_seconds is None else float(cold_floor_seconds)
        self.max_workflows = int(max_workflows)
        self.tombstone_seconds = float(tombstone_seconds)
        self._floor_ms = int(self.floor_seconds * 1000)
        # runs are keyed by (account_id, run_id)
        self._runs: OrderedDict[tuple[str, str], _Run] = OrderedDict()  # open (or finish not yet passed)
        self._done: OrderedDict[tuple[str, str], int] = OrderedDict()  # closed runs -> finish ms
        self._due: list[tuple[int, int, tuple[str, str]]] = []  # (check at ms, started ms, run); lazy deletion
        self._finishes: list[tuple[int, tuple[str, str], int, str]] = []  # (finish ms, run, duration ms, wf)
        self._workflows: OrderedDict[tuple[str, str], _Durations] = OrderedDict()
        self._next_tick: int | None = None  # next minute boundary (ms) to evaluate
        self._first: int | None = None
        self.stats = {"evicted_open_runs": 0, "evicted_workflows": 0, "ignored_start_after_finish": 0}

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

    def _touch_first(self, ms: int) -> None:
        if self._next_tick is None and (self._first is None or ms < self._first):
            self._first = ms

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
        heapq.heappush(self._due, (s + self._floor_ms, s, key))
        self._touch_first(s)
        self._maybe_compact()

    def run_finished(self, account_id: str, workflow_id: str, run_id: str, started_at: datetime | None,
                     finished_at: datetime) -> None:
        f = _ms(finished_at, "finished_at")
        s_given = None if started_at is None else _ms(started_at, "started_at")
        key = (account_id, run_id)
        if key in self._done:
            return
        self._wf(account_id, workflow_id, None)
        run = self._runs.get(key)
        if run is None:
            run = self._new_run(key, workflow_id)
            if s_given is not None:
                run.started_ms = s_given
                heapq.heappush(self._due, (s_given + self._floor_ms, s_given, key))
        if run.finished_ms is not None:
            return  # a second finish of the same run: the first one counts
        run.finished_ms = f
        start = s_given if s_given is not None else run.started_ms
        duration = -1 if start is None else max(0, f - start)
        heapq.heappush(self._finishes, (f, key, duration, workflow_id))
        self._touch_first(f)

    def _maybe_compact(self) -> None:
        if len(self._due) > 2 * len(self._runs) + 1024:
            due = []
            for key, run in self._runs.items():
                if run.started_ms is not None and run.fired is None:
                    due.append((run.started_ms + self._floor_ms, run.started_ms, key))
            heapq.heapify(due)
            self._due = due

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

    def advance(self, watermark: datetime) -> list[Alert]:
        """Evaluate every minute boundary up to ``watermark`` not evaluated yet; return the
        stuck alerts that started firing or resolved."""
        w = _ms(watermark, "watermark")
        last_tick = (w // _MINUTE_MS) * _MINUTE_MS
        if self._next_tick is None:
            if self._first is None:
                return []
            self._next_tick = (self._first // _MINUTE_MS + 1) * _MINUTE_MS
        out: list[Alert] = []
        while self._next_tick <= last_tick:
            T = self._next_tick
            self._tick(T, out)
            # jump to the next boundary where something can happen
            # (never beyond the first boundary after the watermark: later input may be due earlier)
            nxt = last_tick + _MINUTE_MS
            pending = [h[0][0] for h in (self._due, self._finishes) if h]
            if pending:
                nxt = min(nxt, -(-min(pending) // _MINUTE_MS) * _MINUTE_MS)
            self._next_tick = max(T + _MINUTE_MS, nxt)
        return out

    def _tick(self, T: int, out: list[Alert]) -> None:
        runs = self._runs
        # 1. finishes at or before T: durations into samples, resolve stuck runs, close runs
        fin = self._finishes
        resolved: list[Alert] = []
        while fin and fin[0][0] <= T:
            f, key, duration, workflow_id = heapq.heappop(fin)
            account_id, run_id = key
            run = runs.pop(key, None)
            fired = run.fired if run is not None else None
            if duration >= 0 and fired is None:
                d = self._workflows.get((account_id, workflow_id))
                if d is not None:
                    d.samples.append(duration)
                    d.sorted = None
            if fired is not None:
                numbers = dict(fired.numbers)
                if duration >= 0:
                    numbers["duration_seconds"] = duration / 1000.0
                    took = f"finished after {_fmt_duration(duration / 1000.0)}"
                else:
                    took = "finished"
                summary = (f"{fired.subject_name} ({fired.account_id}): run {run_id} {took} "
                           f"(stuck threshold {_fmt_duration(numbers['threshold_seconds'])})")
                resolved.append(Alert(fired.alert_id, self.kind, fired.account_id, fired.subject,
                                      fired.subject_name, "resolved", fired.severity, fired.started_at, _dt(f),
                                      summary, numbers))
            self._done[key] = f
        resolved.sort(key=lambda a: (a.resolved_at, a.account_id, a.subject))
        out.extend(resolved)
        # forget closed runs after a while
        done = self._done
        ttl = int(self.tombstone_seconds * 1000)
        while done:
            f = next(iter(done.values()))
            if f + ttl < T or len(done) > self.max_open_runs:
                done.popitem(last=False)
            else:
                break
        # 2. runs due for a check
        due = self._due
        fired_now: list[Alert] = []
        while due and due[0][0] <= T:
            _, started, key = heapq.heappop(due)
            run_id = key[1]
            run = runs.get(key)
            if run is None or run.fired is not None or run.started_ms != started:
                continue  # stale entry
            if run.finished_ms is not None and run.finished_ms <= T:
                continue  # finished (closed at its finish tick)
            d = self._workflows.get((run.account_id, run.workflow_id))
            threshold, q, n = self._threshold(d)
            if threshold is None:
                heapq.heappush(due, (T + max(self._floor_ms, _MINUTE_MS), started, key))
                continue
            stuck_at = started + threshold
            if T - started <= threshold:
                heapq.heappush(due, (stuck_at + 1, started, key))
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
            fired_now.append(alert)
        fired_now.sort(key=lambda a: (a.started_at, a.account_id, a.subject))
        out.extend(fired_now)

    def state_sizes(self) -> dict[str, int]:
        return {
            "runs": len(self._runs),
            "closed_runs": len(self._done),
            "due_heap": len(self._due),
            "finish_heap": len(self._finishes),
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
    __slots__ = ("pending", "running", "buckets", "samples", "arrivals", "starts", "finishes", "firing",
                 "last_seen_ms")

    def __init__(self, history: int) -> None:
        self.pending = 0
        self.running = 0
        self.buckets: dict[int, list[int]] = {}  # bucket -> [pending delta, running delta, arrivals, starts, finishes]
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
        self._next: int | None = None  # next minute to evaluate
        self._first: int | None = None
        self.stats = {"late_deltas": 0, "evicted_accounts": 0}

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
                del accounts[key]
                self.stats["evicted_accounts"] += 1
            q = accounts[account_id] = _Queue(self.growth_minutes + 1)
        else:
            accounts.move_to_end(account_id)
        if t > q.last_seen_ms:
            q.last_seen_ms = t
        minute = t // _MINUTE_MS
        if self._next is not None and minute < self._next:
            # its minute was evaluated already: it only changes the depth from now on
            q.pending += pending_delta
            q.running += running_delta
            self.stats["late_deltas"] += 1
            return
        if self._next is None and (self._first is None or minute < self._first):
            self._first = minute
        b = t // self._bucket_ms
        x = q.buckets.get(b)
        if x is None:
            x = q.buckets[b] = [0, 0, 0, 0, 0]
        x[0] += pending_delta
        x[1] += running_delta
        if pending_delta > 0:
            x[2] += pending_delta
        if running_delta > 0:
            x[3] += running_delta
        elif running_delta < 0:
            x[4] -= running_delta

    def advance(self, watermark: datetime) -> list[Alert]:
        """Evaluate every whole minute that ends at or before ``watermark`` and was not
        evaluated yet; return the alerts that started firing or resolved."""
        last = _ms(watermark, "watermark") // _MINUTE_MS - 1
        if self._next is None:
            if self._first is None or self._first > last:
                return []
            self._next = self._first
        out: list[Alert] = []
        per_minute = 60 // self.bucket_seconds
        while self._next <= last:
            m = self._next
            end_bucket = (m + 1) * per_minute  # buckets < end_bucket belong to minutes <= m
            idle_before = (m + 1 - self.idle_minutes) * _MINUTE_MS
            events: list[Alert] = []
            dead = []
            for account_id, q in self._accounts.items():
                arrivals = starts = finishes = 0
                if q.buckets:
                    for b in [b for b in q.buckets if b < end_bucket]:
                        dp, dr, arr, st, fin = q.buckets.pop(b)
                        q.pending += dp
                        q.running += dr
                        arrivals += arr
                        starts += st
                        finishes += fin
                q.samples.append(q.pending)
                q.arrivals.append(arrivals)
                q.starts.append(starts)
                q.finishes.append(finishes)
                self._evaluate(account_id, q, m, events)
                if (q.firing is None and not q.buckets and q.pending == 0 and q.running == 0
                        and q.last_seen_ms < idle_before):
                    dead.append(account_id)
            for account_id in dead:
                del self._accounts[account_id]
            out.extend(events)
            self._next = m + 1
        return out

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

    def _evaluate(self, account_id: str, q: _Queue, m: int, out: list[Alert]) -> None:
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
                out.append(Alert(alert_id, self.kind, account_id, account_id, account_id, "firing", severity,
                                 started, None, summary, x))
            return
        if q.pending > fs.peak_pending:
            fs.peak_pending = q.pending
        if grew_now and q.pending >= self.min_pending:
            fs.clear_streak = 0
            return
        fs.clear_streak += 1
        if fs.clear_streak == 1:
            fs.clear_since_ms = end_ms
        if fs.clear_streak < self.clear_minutes:
            return
        x = self._numbers(q)
        x["peak_pending"] = float(fs.peak_pending)
        q.firing = None
        summary = (f"{account_id}: queue stopped growing, {q.pending} runs pending (peak {fs.peak_pending}), "
                   f"{q.running} running, {x['starts_per_minute']:.0f} starting per minute, {self._eta_text(x)}")
        out.append(Alert(fs.alert_id, self.kind, account_id, account_id, account_id, "resolved", fs.severity,
                         _dt(fs.started_ms), _dt(fs.clear_since_ms), summary, x))

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

    def advance(self, watermark: datetime) -> list[Alert]:
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
        parts.append("All times are event times: a minute is evaluated once the watermark (latest event time "
                     "minus the allowed lateness) has passed its end; each alert is reported once when it starts "
                     "firing and once when it resolves, with the same alert_id.")
        return "\n\n".join(parts)


def describe() -> str:
    """The rules with their default thresholds, in plain words (for the docs)."""
    return Detectors().describe()
