"""Failure spikes per workflow or per account: the rule is in the ``streams.detectors``
package docstring."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from datetime import datetime

from streams.detectors.alert import (
    _MINUTE_MS,
    Alert,
    Watermark,
    _alert_id,
    _common_floor,
    _dt,
    _Firing,
    _fmt_chance,
    _fmt_minutes,
    _fmt_pct,
    _lru_account,
    _lru_hit,
    _ms,
    _require_at_least,
    _targets,
)
from streams.detectors.stats import beta_binomial_tail, binomial_tail


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


class _SpikeFiring(_Firing):
    __slots__ = ("peak_rate", "peak_failures", "peak_runs", "minutes", "base_runs", "base_failures")

    def __init__(self, alert_id: str, started_ms: int, severity: str) -> None:
        super().__init__(alert_id, started_ms, severity)
        self.peak_rate = 0.0
        self.peak_failures = 0
        self.peak_runs = 0
        self.minutes = 0
        self.base_runs = 0
        self.base_failures = 0


class FailureSpikeDetector:
    """Failure spikes per workflow (``scope="workflow"``, the default) or per account
    (``scope="account"``: all of an account's workflows together; subject and subject_name
    are then the account id). See the ``streams.detectors`` package docstring for the rule.

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
        _require_at_least(1, window_minutes=window_minutes, baseline_minutes=baseline_minutes,
                          clear_minutes=clear_minutes, max_keys=max_keys, max_accounts=max_accounts)
        if not 0.0 < prior_rate < 1.0 or prior_strength <= 0:
            raise ValueError("prior_rate must be in (0, 1) and prior_strength > 0")
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
        acct = _lru_hit(self._accounts, account_id)
        if acct is not None:
            return acct
        return _lru_account(self._accounts, account_id, self.max_accounts, lambda old: not old.firing,
                            self._forget_account, lambda: _SpikeAccount(self._floor))

    def _forget_account(self, old: _SpikeAccount) -> None:
        for key in old.keys:  # its alerts are never resolved
            if self._keys.pop(key, None) is not None:
                self.stats["evicted_keys"] += 1
        self.stats["evicted_accounts"] += 1

    def _evict_one(self) -> None:
        # the first key not firing, else the oldest
        key = next((k for k, st in self._keys.items() if st.firing is None), None)
        if key is None:
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
            fs.holds()
            if numbers["window_rate"] > fs.peak_rate:
                fs.peak_rate = numbers["window_rate"]
            if f > fs.peak_failures:
                fs.peak_failures, fs.peak_runs = f, n
            return None
        if not fs.quiet(end_ms, self.clear_minutes):
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
