"""Stuck runs: runs running far longer than their workflow usually takes (rule in the
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
    _fmt_duration,
    _lru_account,
    _lru_hit,
    _ms,
    _require_at_least,
    _targets,
)


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


_Changes = list[tuple[int, int, tuple[datetime | None, str, str], Alert]]
"""Alerts raised while advancing, with their order: (boundary, 0 resolved / 1 firing, (time,
account, run))."""


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
    remembered for ``tombstone_seconds`` (30 minutes) of their account's event time so a start
    arriving after its finish is ignored; a start of a run not open, older than the account's
    progress by more than that, is ignored too (whether it finished can no longer be told; it
    is far beyond any lateness; the tombstones are most of what a snapshot of the detectors holds). Each account's runs
    are judged by that account's watermark only; boundaries where nothing is due are skipped."""

    kind = "stuck_run"

    def __init__(self, *, factor: float = 5.0, min_samples: int = 20, floor_seconds: float = 300.0,
                 max_open_runs: int = 200_000, sample_size: int = 500, quantile: float = 0.99,
                 cold_floor_seconds: float | None = 3600.0, max_workflows: int = 50_000,
                 tombstone_seconds: float = 1800.0, max_accounts: int = 100_000) -> None:
        _require_at_least(1, min_samples=min_samples, max_open_runs=max_open_runs, max_workflows=max_workflows,
                          max_accounts=max_accounts)
        _require_at_least(0, floor_seconds=floor_seconds)
        if factor <= 0 or sample_size < min_samples or not 0.0 < quantile <= 1.0:
            raise ValueError("need factor > 0, sample_size >= min_samples and 0 < quantile <= 1")
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
        acct = _lru_hit(self._accounts, account_id)
        if acct is not None:
            return acct
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
        if key in self._done or (acct.next is not None and s < acct.next - int(self.tombstone_seconds * 1000)
                                 and key not in self._runs):
            # closed already, or older than any tombstone (whether it finished can no longer be told)
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
                owner = self._accounts.get(run.account_id)
                if owner is not None:
                    owner.due.append((run.started_ms + self._floor_ms, run.started_ms, key))
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
        out: _Changes = []
        for account_id, w in targets:
            acct = self._accounts.get(account_id)
            if acct is not None:
                self._advance_account(acct, (w // _MINUTE_MS) * _MINUTE_MS, out)
        if common is not None:
            self._floor = _common_floor(self._floor, (common // _MINUTE_MS + 1) * _MINUTE_MS,
                                        self._accounts.values())
        out.sort(key=lambda x: x[:3])
        return [alert for *_, alert in out]

    def _advance_account(self, acct: _StuckAccount, last_tick: int, out: _Changes) -> None:
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

    def _tick(self, acct: _StuckAccount, T: int, out: _Changes) -> None:
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
