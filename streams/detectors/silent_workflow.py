"""Silent workflows: a workflow that has been producing runs steadily stops (rule in the
``streams.detectors`` package docstring)."""

from __future__ import annotations

import bisect
import math
from datetime import datetime

from streams.detectors.alert import (
    Alert,
    _alert_id,
    _dt,
    _fmt_duration,
    _ms,
    _require_at_least,
)
from streams.detectors.ordered import Changes, Item, OrderedAccount, OrderedDetector, RunLevelDetector


class _Rhythm:
    """One workflow's recent run arrivals (ms, ascending, at most ``max_runs``) and its alert."""

    __slots__ = ("name", "arrivals", "firing", "due", "hours", "first_hour", "dirty")

    def __init__(self, name: str) -> None:
        self.name = name
        self.arrivals: list[int] = []
        self.hours: dict[int, int] = {}   # runs per hour (hours since the epoch), the last two weeks
        self.first_hour: int | None = None
        self.firing: Alert | None = None
        self.due: int | None = None     # when the silence exceeds the threshold (None: not judged)
        self.dirty = False              # runs arrived since ``due`` was computed


_HOUR_MS = 3_600_000
_WEEK_HOURS = 168


class SilentWorkflowDetector(RunLevelDetector):
    """A workflow that produced at least ``min_runs`` runs (``run.queued``) in the
    ``baseline_hours`` before its latest run, and has then produced none for longer than
    max(``factor`` x its usual gap, ``floor_minutes``): the usual gap is the ``quantile`` of
    the gaps between those runs; and for so long that at its usual rate for those hours at
    least ``min_expected`` runs would have come (so a workflow quiet every night is not alerted
    every night): the rate of the same hour a week before (mean of the last two weeks) once it
    has 8 days of history, else of the same hour of the previous days (up to 7) once it has a
    day, else its rate over its last ``min_runs`` runs. Fires at the moment the silence crossed both;
    resolves when the next run arrives (resolved at its time). Judged as the account's
    watermark moves, which after the idle timeout follows the wall clock: a workflow that
    stopped is noticed even when its whole account went quiet. Rare workflows (fewer runs in
    the baseline) are never judged. Memory: ``max_runs`` arrivals per workflow,
    ``max_workflows`` workflows per account (least recently active forgotten first)."""

    kind = "silent_workflow"

    def __init__(self, *, factor: float = 3.0, quantile: float = 0.95, floor_minutes: float = 15.0,
                 min_runs: int = 20, baseline_hours: float = 24.0, max_runs: int = 200, min_expected: float = 10.0,
                 max_workflows: int = 1_000, max_accounts: int = 100_000) -> None:
        _require_at_least(2, min_runs=min_runs)
        _require_at_least(1, max_workflows=max_workflows)
        if factor <= 0 or floor_minutes < 0 or baseline_hours <= 0 or max_runs < min_runs \
                or not 0.0 < quantile <= 1.0:
            raise ValueError("need factor > 0, floor_minutes >= 0, baseline_hours > 0, max_runs >= min_runs "
                             "and 0 < quantile <= 1")
        self.factor, self.quantile, self.floor_minutes = float(factor), float(quantile), float(floor_minutes)
        self.min_runs, self.baseline_hours, self.max_runs = int(min_runs), float(baseline_hours), int(max_runs)
        self.max_workflows = int(max_workflows)
        if min_expected <= 0:
            raise ValueError("need min_expected > 0")
        self.min_expected = float(min_expected)
        self._core = _SilentCore(self, max_accounts)

    def run_arrived(self, account_id: str, workflow_id: str, workflow_name: str, at: datetime) -> None:
        """A run of the workflow was queued at ``at`` (event time)."""
        self._core._push(account_id, (_ms(at, "at"), workflow_id, workflow_name))

    def threshold_seconds(self, account_id: str, workflow_id: str) -> float | None:
        """The workflow's current silence threshold (None: too few runs to judge)."""
        acct = self._core._accounts.get(account_id)
        rhythm = None if acct is None else acct.state.get(workflow_id)
        if rhythm is None:
            return None
        limit, _, _ = self.threshold(rhythm.arrivals)
        return None if limit is None else limit / 1000.0

    def threshold(self, arrivals: list[int]) -> tuple[int | None, float, int]:
        """(threshold ms or None, usual gap ms, runs in the baseline) of ascending arrivals."""
        if not arrivals:
            return None, math.nan, 0
        lo = bisect.bisect_left(arrivals, arrivals[-1] - int(self.baseline_hours * 3_600_000))
        recent = arrivals[lo:]
        if len(recent) < self.min_runs:
            return None, math.nan, len(recent)
        gaps = sorted(b - a for a, b in zip(recent, recent[1:], strict=False))
        gap = gaps[max(1, math.ceil(self.quantile * len(gaps))) - 1]
        return max(int(self.floor_minutes * 60_000), int(math.ceil(self.factor * gap))), float(gap), len(recent)

    def hourly_rate(self, rhythm: _Rhythm, hour: int, last_hour: int, recent: float) -> tuple[float, str]:
        """Expected runs in ``hour`` (hours since the epoch) from complete hours of history only
        (after the first hour seen, before the hour of the latest run), and the basis used."""
        first = -1 if rhythm.first_hour is None else rhythm.first_hour
        counts = rhythm.hours
        weeks = [h for h in (hour - _WEEK_HOURS, hour - 2 * _WEEK_HOURS) if first < h < last_hour]
        if weeks and last_hour - first > _WEEK_HOURS + 24:
            return sum(counts.get(h, 0) for h in weeks) / len(weeks), "hour of week"
        days = [h for h in (hour - 24 * k for k in range(1, 8)) if first < h < last_hour]
        if days:
            return sum(counts.get(h, 0) for h in days) / len(days), "hour of day"
        return recent, "recent rate"

    def expected_due(self, rhythm: _Rhythm) -> tuple[int | None, str]:
        """When ``min_expected`` runs would have come since the latest one at the workflow's usual
        rate for those hours (None: not within two weeks), and the basis of that rate."""
        arrivals = rhythm.arrivals
        last = arrivals[-1]
        lo = max(0, len(arrivals) - self.min_runs)    # the local rate: its last min_runs runs
        span_hours = max((last - arrivals[lo]) / _HOUR_MS, 1 / 60)
        recent = (len(arrivals) - lo - 1) / span_hours
        last_hour = last // _HOUR_MS
        total, basis = 0.0, "recent rate"
        for hour in range(last_hour, last_hour + 2 * _WEEK_HOURS):
            rate, basis = self.hourly_rate(rhythm, hour, last_hour, recent)
            start = max(last, hour * _HOUR_MS)
            gained = rate * ((hour + 1) * _HOUR_MS - start) / _HOUR_MS
            if total + gained >= self.min_expected:
                return start + int(math.ceil((self.min_expected - total) / rate * _HOUR_MS)), basis
            total += gained
        return None, basis

    def state_sizes(self) -> dict[str, int]:
        return self._core.state_sizes()

    def describe(self) -> str:
        return (f"Silent workflow (each workflow): a workflow with >= {self.min_runs} runs in the "
                f"{self.baseline_hours:g} h before its latest run fires once no run has arrived for longer than "
                f"max({self.factor:g} x its usual gap between runs (the {self.quantile:.0%} quantile of those "
                f"gaps), {self.floor_minutes:g} min), and for so long that >= {self.min_expected:g} runs would have "
                f"come at "
                f"its usual rate for those hours (hour of week with 8 days of history, hour of day with one, else "
                f"its rate over its last {self.min_runs} runs); it resolves when a run arrives. Judged as the "
                f"account's watermark moves, also when its input went quiet (the watermark follows the wall clock).")


class _SilentCore(OrderedDetector[SilentWorkflowDetector]):
    def _apply(self, acct: OrderedAccount, item: Item, T: int, out: Changes) -> None:
        at, workflow_id, name = item
        rule, state = self.rule, acct.state
        rhythm: _Rhythm | None = state.pop(workflow_id, None)
        if rhythm is None:
            rhythm = _Rhythm(name or workflow_id)
            if len(state) >= rule.max_workflows:
                oldest = next((k for k, r in state.items() if r.firing is None), next(iter(state)))
                del state[oldest]
        state[workflow_id] = rhythm   # most recently active last
        if name:
            rhythm.name = name
        arrivals = rhythm.arrivals
        bisect.insort(arrivals, at)
        if len(arrivals) > rule.max_runs:
            del arrivals[0]
        hour, hours = at // _HOUR_MS, rhythm.hours
        hours[hour] = hours.get(hour, 0) + 1
        if rhythm.first_hour is None or hour < rhythm.first_hour:
            rhythm.first_hour = hour
        if len(hours) > 2 * _WEEK_HOURS + 26:
            newest = max(hours)
            for old in [h for h in hours if h < newest - 2 * _WEEK_HOURS - 24]:
                del hours[old]
        fired = rhythm.firing
        if fired is not None:   # any run resolves it, a late one too
            back = max(at, _ms(fired.started_at))
            numbers = dict(fired.numbers)
            numbers["silent_seconds"] = (back - int(numbers["last_run_ms"])) / 1000.0
            summary = (f"{rhythm.name} ({acct.account_id}): runs again after "
                       f"{_fmt_duration(numbers['silent_seconds'])} without one")
            out.append((T, 0, acct.account_id, workflow_id,
                        Alert(fired.alert_id, rule.kind, acct.account_id, workflow_id, rhythm.name, "resolved",
                              fired.severity, fired.started_at, _dt(back), summary, numbers)))
            rhythm.firing = None
        rhythm.due, rhythm.dirty = None, True     # computed at the boundary (once however many runs came)

    def _tick(self, acct: OrderedAccount, T: int, out: Changes) -> None:
        rule = self.rule
        for workflow_id, rhythm in acct.state.items():
            if rhythm.dirty:
                rhythm.dirty = False
                limit, _, _ = rule.threshold(rhythm.arrivals)
                if limit is not None and rhythm.firing is None:
                    expected, _ = rule.expected_due(rhythm)
                    if expected is not None:
                        rhythm.due = max(rhythm.arrivals[-1] + limit, expected)
            if rhythm.due is None or rhythm.due > T:
                continue
            limit, gap, runs = rule.threshold(rhythm.arrivals)
            assert limit is not None
            started = _dt(rhythm.due)
            _, basis = rule.expected_due(rhythm)
            silent = (rhythm.due - rhythm.arrivals[-1]) / 1000.0
            numbers = {"threshold_seconds": limit / 1000.0, "usual_gap_seconds": gap / 1000.0,
                       "baseline_runs": float(runs), "last_run_ms": float(rhythm.arrivals[-1]),
                       "silent_seconds": silent, "expected_runs": rule.min_expected}
            summary = (f"{rhythm.name} ({acct.account_id}): no run for {_fmt_duration(silent)}, usually one every "
                       f"{_fmt_duration(gap / 1000.0)}; {rule.min_expected:g} runs were expected by now ({basis})")
            alert = Alert(_alert_id(rule.kind, acct.account_id, workflow_id, started), rule.kind, acct.account_id,
                          workflow_id, rhythm.name, "firing", "warning", started, None, summary, numbers)
            rhythm.firing, rhythm.due = alert, None
            out.append((T, 1, acct.account_id, workflow_id, alert))

    def _due(self, acct: OrderedAccount) -> int | None:
        dues = [r.due for r in acct.state.values() if r.due is not None]
        return min(dues) if dues else None
