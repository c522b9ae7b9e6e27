"""Run deadlines: a run still running past its workflow's limit (rule in the
``streams.detectors`` package docstring)."""

from __future__ import annotations

import heapq
import math
import re
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import datetime

import orjson

from streams.detectors.alert import (
    Alert,
    _alert_id,
    _dt,
    _fmt_duration,
    _ms,
    _require_at_least,
)
from streams.detectors.ordered import Changes, Item, OrderedAccount, OrderedDetector, RunLevelDetector

_TOMBSTONE_MS = 30 * 60_000

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")


def parse_deadlines(text: str | None) -> dict[str, float]:
    """``RUNLENS_ALERT_DEADLINES``: a JSON object ``{"acme/wf-x": "10m", "wf-y": 90}`` (keys
    ``account/workflow_id`` or ``workflow_id`` for every account; values seconds or ``90s``,
    ``10m``, ``2h``, ``1d``) -> seconds by key. ValueError naming the bad part."""
    if text is None or not text.strip():
        return {}
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("deadlines must be a JSON object like {\"acme/wf-x\": \"10m\"}") from None
    if not isinstance(raw, dict):
        raise ValueError("deadlines must be a JSON object like {\"acme/wf-x\": \"10m\"}")
    out: dict[str, float] = {}
    for key, value in raw.items():
        match = None if isinstance(value, bool) else _DURATION.match(str(value))
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
        if not key.strip() or not (seconds > 0 and math.isfinite(seconds)):
            raise ValueError(f"deadline {key!r}: {value!r} is not a duration like 90s, 10m, 2h")
        out[key.strip()] = seconds
    return out


class _Open:
    __slots__ = ("workflow_id", "name", "started_ms", "deadline_ms", "limit_ms", "source", "fired")

    def __init__(self, workflow_id: str, name: str, started_ms: int, limit_ms: int, source: str) -> None:
        self.workflow_id, self.name, self.started_ms = workflow_id, name, started_ms
        self.limit_ms, self.deadline_ms, self.source = limit_ms, started_ms + limit_ms, source
        self.fired: Alert | None = None


class _DeadlineState:
    """One account's open runs, recent durations per workflow, due heap and limits of the minute."""

    __slots__ = ("runs", "durations", "due", "limits", "closed")

    def __init__(self) -> None:
        self.limits: dict[str, tuple[int, int | None, str]] = {}   # workflow -> (boundary, limit, source)
        self.closed: OrderedDict[str, int] = OrderedDict()           # runs closed in the last 30 min -> finish
        self.runs: dict[str, _Open] = {}
        self.durations: OrderedDict[str, deque[int]] = OrderedDict()
        self.due: list[tuple[int, str]] = []    # (deadline ms, run id); stale entries skipped


class RunDeadlineDetector(RunLevelDetector):
    """A run still running past its workflow's limit: the configured one (``limits``: seconds
    by ``account/workflow_id`` or ``workflow_id``), else ``factor`` x the ``quantile`` (p99) of the
    workflow's last ``sample_size`` finished durations once it has ``min_samples`` of them
    (never below ``floor_seconds``), else ``cold_floor_seconds`` (None: not judged until the
    workflow has enough). The limit is fixed when the run starts (the percentile as of the
    minute boundary being judged: recomputed once per workflow and minute). Fires at the run's deadline,
    while it runs; resolves when it finishes. Inputs are applied in event-time order, so a
    finish that arrives before its start (within the lateness) gives the same result.
    Runs closed in the last 30 minutes of event time are remembered (``max_done`` at most per
    account) so that a start arriving after its finish is ignored. Memory: ``max_open_runs``,
    ``max_workflows`` and ``max_done`` per account."""

    kind = "run_deadline"

    def __init__(self, *, limits: Mapping[str, float] | None = None, quantile: float = 0.99,
                 min_samples: int = 20, sample_size: int = 500, factor: float = 1.5, floor_seconds: float = 300.0,
                 cold_floor_seconds: float | None = 3600.0, max_open_runs: int = 20_000,
                 max_workflows: int = 1_000, max_done: int = 20_000, max_accounts: int = 100_000) -> None:
        _require_at_least(1, min_samples=min_samples, max_open_runs=max_open_runs, max_workflows=max_workflows,
                          max_done=max_done)
        _require_at_least(0, floor_seconds=floor_seconds)
        if sample_size < min_samples or not 0.0 < quantile <= 1.0 or factor <= 0:
            raise ValueError("need sample_size >= min_samples, 0 < quantile <= 1 and factor > 0")
        self.factor = float(factor)
        self.limits = {k: float(v) for k, v in (limits or {}).items()}
        if any(not (v > 0 and math.isfinite(v)) for v in self.limits.values()):
            raise ValueError("deadline limits must be > 0 seconds")
        self.quantile, self.min_samples, self.sample_size = float(quantile), int(min_samples), int(sample_size)
        self.floor_seconds = float(floor_seconds)
        self.cold_floor_seconds = None if cold_floor_seconds is None else float(cold_floor_seconds)
        self.max_open_runs, self.max_workflows, self.max_done = int(max_open_runs), int(max_workflows), int(max_done)
        self._core = _DeadlineCore(self, max_accounts)

    def run_started(self, account_id: str, workflow_id: str, workflow_name: str, run_id: str,
                    started_at: datetime) -> None:
        self._core._push(account_id, (_ms(started_at, "started_at"), 0, run_id, workflow_id, workflow_name, -1))

    def run_finished(self, account_id: str, workflow_id: str, run_id: str, started_at: datetime | None,
                     finished_at: datetime) -> None:
        started = -1 if started_at is None else _ms(started_at, "started_at")
        self._core._push(account_id, (_ms(finished_at, "finished_at"), 1, run_id, workflow_id, "", started))

    def limit(self, account_id: str, workflow_id: str, durations: deque[int] | None) -> tuple[int | None, str]:
        """(limit ms or None, where it comes from: configured / p99 / cold floor)."""
        configured = self.limits.get(f"{account_id}/{workflow_id}", self.limits.get(workflow_id))
        if configured is not None:
            return int(configured * 1000), "configured"
        n = 0 if durations is None else len(durations)
        if n < self.min_samples:
            if self.cold_floor_seconds is None:
                return None, "cold"
            return int(max(self.floor_seconds, self.cold_floor_seconds) * 1000), "cold floor"
        assert durations is not None
        q = sorted(durations)[max(1, math.ceil(self.quantile * n)) - 1]
        return (max(int(self.floor_seconds * 1000), int(math.ceil(self.factor * q))),
                f"{self.factor:g} x p{self.quantile * 100:g} of {n} runs")

    def state_sizes(self) -> dict[str, int]:
        states = [a.state.get("s") for a in self._core._accounts.values()]
        live = [s for s in states if isinstance(s, _DeadlineState)]
        return {"accounts": len(states), "open_runs": sum(len(s.runs) for s in live),
                "workflows": sum(len(s.durations) for s in live), "closed_runs": sum(len(s.closed) for s in live),
                "pending": sum(len(a.pending) for a in self._core._accounts.values())}

    def describe(self) -> str:
        configured = f" (configured: {len(self.limits)} workflow(s))" if self.limits else ""
        cold = ("not judged" if self.cold_floor_seconds is None
                else f"{_fmt_duration(max(self.floor_seconds, self.cold_floor_seconds))}")
        return (f"Run deadline (each run): fire while a run is still running past its workflow's limit: the "
                f"configured one (RUNLENS_ALERT_DEADLINES){configured}, else {self.factor:g} x the "
                f"p{self.quantile * 100:g} of its "
                f"last {self.sample_size} finished durations (>= {self.min_samples} of them, never below "
                f"{_fmt_duration(self.floor_seconds)}), else {cold}. Resolve when the run finishes.")


class _DeadlineCore(OrderedDetector[RunDeadlineDetector]):
    @staticmethod
    def _state(acct: OrderedAccount) -> _DeadlineState:
        st = acct.state.get("s")
        if not isinstance(st, _DeadlineState):
            st = acct.state["s"] = _DeadlineState()
        return st

    def _apply(self, acct: OrderedAccount, item: Item, T: int, out: Changes) -> None:
        ts, finish, run_id, workflow_id, name, started = item
        rule = self.rule
        st: _DeadlineState = self._state(acct)
        if not finish:
            if run_id in st.runs or run_id in st.closed:   # a late start of a run already closed
                return
            cached = st.limits.get(workflow_id)
            if cached is None or cached[0] != T:      # the percentile once per workflow and minute
                if len(st.limits) > 2 * rule.max_workflows:
                    st.limits.clear()
                cached = st.limits[workflow_id] = (T, *rule.limit(acct.account_id, workflow_id,
                                                                  st.durations.get(workflow_id)))
            _, limit, source = cached
            if limit is None:
                return
            while len(st.runs) >= rule.max_open_runs:
                st.runs.pop(next(iter(st.runs)))     # an evicted run's alert is never resolved
            opened = st.runs[run_id] = _Open(workflow_id, name or workflow_id, ts, limit, source)
            heapq.heappush(st.due, (opened.deadline_ms, run_id))
            if len(st.due) > 2 * len(st.runs) + 1024:     # closed runs' entries: rebuild from the open ones
                st.due = [(r.deadline_ms, k) for k, r in st.runs.items() if r.fired is None]
                heapq.heapify(st.due)
            return
        closed = st.closed
        closed[run_id] = ts
        while closed and (len(closed) > rule.max_done or next(iter(closed.values())) < T - _TOMBSTONE_MS):
            closed.popitem(last=False)
        run = st.runs.pop(run_id, None)
        start = started if started >= 0 else (run.started_ms if run is not None else -1)
        if run is not None and run.fired is not None:
            fired = run.fired
            numbers = dict(fired.numbers)
            numbers["duration_seconds"] = (ts - run.started_ms) / 1000.0
            summary = (f"{run.name} ({acct.account_id}): run {run_id} finished after "
                       f"{_fmt_duration(numbers['duration_seconds'])} (deadline "
                       f"{_fmt_duration(run.limit_ms / 1000.0)})")
            out.append((T, 0, acct.account_id, run_id,
                        Alert(fired.alert_id, rule.kind, acct.account_id, run_id, run.name, "resolved",
                              fired.severity, fired.started_at, _dt(ts), summary, numbers)))
            return   # an overdue run's duration does not raise its workflow's limit
        if start < 0:
            return
        samples = st.durations.get(workflow_id)
        if samples is None:
            if len(st.durations) >= rule.max_workflows:
                st.durations.popitem(last=False)
            samples = st.durations[workflow_id] = deque(maxlen=rule.sample_size)
        else:
            st.durations.move_to_end(workflow_id)
        samples.append(max(0, ts - start))

    def _tick(self, acct: OrderedAccount, T: int, out: Changes) -> None:
        st = acct.state.get("s")
        if not isinstance(st, _DeadlineState):
            return
        rule, due = self.rule, st.due
        while due and due[0][0] <= T:
            deadline, run_id = heapq.heappop(due)
            run = st.runs.get(run_id)
            if run is None or run.fired is not None or run.deadline_ms != deadline:
                continue
            started = _dt(deadline)
            numbers = {"limit_seconds": run.limit_ms / 1000.0, "run_started_ms": float(run.started_ms)}
            summary = (f"{run.name} ({acct.account_id}): run {run_id} still running after "
                       f"{_fmt_duration(run.limit_ms / 1000.0)} (deadline: {run.source})")
            run.fired = Alert(_alert_id(rule.kind, acct.account_id, run_id, started), rule.kind, acct.account_id,
                              run_id, run.name, "firing", "warning", started, None, summary, numbers)
            out.append((T, 1, acct.account_id, run_id, run.fired))

    def _due(self, acct: OrderedAccount) -> int | None:
        st = acct.state.get("s")
        return st.due[0][0] if isinstance(st, _DeadlineState) and st.due else None
