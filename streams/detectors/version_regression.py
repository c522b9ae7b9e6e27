"""Regressions after a version change: the newest version of a workflow fails clearly more
often, or runs clearly longer, than the version before it (rule in the ``streams.detectors``
package docstring)."""

from __future__ import annotations

import math
from collections import deque
from datetime import datetime

from streams.detectors.alert import (
    Alert,
    _alert_id,
    _dt,
    _fmt_chance,
    _fmt_duration,
    _fmt_pct,
    _ms,
    _require_at_least,
)
from streams.detectors.ordered import Changes, Item, OrderedAccount, OrderedDetector, RunLevelDetector
from streams.detectors.stats import binomial_tail


class _Version:
    __slots__ = ("runs", "failures", "durations")

    def __init__(self, size: int) -> None:
        self.runs = 0
        self.failures = 0
        self.durations: deque[int] = deque(maxlen=size)   # ms, the latest finished runs'


class _Versions:
    """One workflow's newest versions (at most ``keep``), whether it has new data since its last
    judgement, and its alert (with the version it is about and its clear streak)."""

    __slots__ = ("name", "versions", "touched", "firing", "fired_version", "clear_streak")

    def __init__(self, name: str) -> None:
        self.name = name
        self.versions: dict[int, _Version] = {}
        self.touched = False
        self.firing: Alert | None = None
        self.fired_version = -1
        self.clear_streak = 0


def _quantile(values: deque[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


class VersionRegressionDetector(RunLevelDetector):
    """The newest version of a workflow (by version number, of its finished runs) against the
    version before it, once both have >= ``min_runs`` finished runs: a regression when the new
    version's failure rate is >= ``min_ratio`` x the previous one's (smoothed as if
    ``prior_strength`` more runs at ``prior_rate`` had been seen), with >= ``min_failures``
    failures and a one-sided binomial tail at the previous rate <= ``max_p_value``; or when its
    p95 duration (of its last ``sample_size`` runs) is >= ``duration_ratio`` x the previous
    one's and longer by >= ``min_extra_seconds``. Judged at each minute boundary after new
    finished runs of the workflow; fires at that boundary, resolves after ``clear_checks``
    judgements in a row without the condition, or at once when a newer version appears.
    Memory: ``keep_versions`` versions per workflow, ``max_workflows`` per account."""

    kind = "version_regression"

    def __init__(self, *, min_runs: int = 20, min_failures: int = 5, min_ratio: float = 2.0,
                 max_p_value: float = 1e-4, prior_rate: float = 0.02, prior_strength: float = 20.0,
                 duration_ratio: float = 1.5, min_extra_seconds: float = 30.0, quantile: float = 0.95,
                 clear_checks: int = 5, sample_size: int = 500, keep_versions: int = 3,
                 max_workflows: int = 1_000, max_accounts: int = 100_000) -> None:
        _require_at_least(1, min_runs=min_runs, min_failures=min_failures, clear_checks=clear_checks,
                          max_workflows=max_workflows)
        _require_at_least(2, keep_versions=keep_versions)
        if min_ratio < 1 or duration_ratio < 1 or not 0 < max_p_value < 1 or not 0 < prior_rate < 1 \
                or prior_strength <= 0 or sample_size < min_runs or not 0 < quantile <= 1:
            raise ValueError("need ratios >= 1, 0 < max_p_value < 1, 0 < prior_rate < 1, prior_strength > 0, "
                             "sample_size >= min_runs and 0 < quantile <= 1")
        self.min_runs, self.min_failures, self.min_ratio = int(min_runs), int(min_failures), float(min_ratio)
        self.max_p_value, self.prior_rate, self.prior_strength = float(max_p_value), float(prior_rate), \
            float(prior_strength)
        self.duration_ratio, self.min_extra_seconds, self.quantile = float(duration_ratio), \
            float(min_extra_seconds), float(quantile)
        self.clear_checks, self.sample_size, self.keep_versions = int(clear_checks), int(sample_size), \
            int(keep_versions)
        self.max_workflows = int(max_workflows)
        self._core = _RegressionCore(self, max_accounts)

    def run_finished(self, account_id: str, workflow_id: str, workflow_name: str, version: int,
                     started_at: datetime | None, finished_at: datetime, failed: bool) -> None:
        f = _ms(finished_at, "finished_at")
        duration = -1 if started_at is None else max(0, f - _ms(started_at, "started_at"))
        self._core._push(account_id, (f, workflow_id, int(version), bool(failed), duration, workflow_name))

    def judge(self, new: _Version, prev: _Version) -> dict[str, float] | None:
        """The figures of a regression of ``new`` against ``prev``, None when there is none."""
        if new.runs < self.min_runs or prev.runs < self.min_runs:
            return None
        alpha = self.prior_rate * self.prior_strength
        base = (prev.failures + alpha) / (prev.runs + self.prior_strength)
        rate = new.failures / new.runs
        out: dict[str, float] = {"new_runs": float(new.runs), "new_failures": float(new.failures),
                                 "new_rate": rate, "previous_runs": float(prev.runs),
                                 "previous_failures": float(prev.failures), "previous_rate": base}
        found = False
        if new.failures >= self.min_failures and rate >= self.min_ratio * base:
            p_value = binomial_tail(new.failures, new.runs, base)
            out["p_value"] = p_value
            found = p_value <= self.max_p_value
        if len(new.durations) >= self.min_runs and len(prev.durations) >= self.min_runs:
            p_new, p_prev = _quantile(new.durations, self.quantile), _quantile(prev.durations, self.quantile)
            out["new_p95_seconds"], out["previous_p95_seconds"] = p_new / 1000.0, p_prev / 1000.0
            if p_new >= self.duration_ratio * p_prev and p_new - p_prev >= self.min_extra_seconds * 1000:
                found = True
                out["slower"] = 1.0
        return out if found else None

    def state_sizes(self) -> dict[str, int]:
        accounts = self._core._accounts.values()
        return {"accounts": len(accounts), "workflows": sum(len(a.state) for a in accounts),
                "versions": sum(len(w.versions) for a in accounts for w in a.state.values()),
                "pending": sum(len(a.pending) for a in accounts)}

    def describe(self) -> str:
        return (f"Version regression (each workflow): its newest version against the one before, once both have "
                f">= {self.min_runs} finished runs. Fire when the new version's failure rate is >= "
                f"{self.min_ratio:g}x the previous one's (smoothed as if {self.prior_strength:g} more runs at "
                f"{_fmt_pct(self.prior_rate)} had been seen), with >= {self.min_failures} failures and a chance of "
                f"at most {_fmt_chance(self.max_p_value)} at the previous rate (one-sided binomial test), or when "
                f"its p{self.quantile * 100:g} duration is >= {self.duration_ratio:g}x the previous one's and "
                f">= {self.min_extra_seconds:g} s longer. Judged each minute with new finished runs; resolve after "
                f"{self.clear_checks} judgements in a row without the condition, or when a newer version appears.")


class _RegressionCore(OrderedDetector[VersionRegressionDetector]):
    def _apply(self, acct: OrderedAccount, item: Item, T: int, out: Changes) -> None:
        _, workflow_id, version, failed, duration, name = item
        rule, state = self.rule, acct.state
        wf: _Versions | None = state.pop(workflow_id, None)
        if wf is None:
            wf = _Versions(name or workflow_id)
            if len(state) >= rule.max_workflows:
                oldest = next((k for k, w in state.items() if w.firing is None), next(iter(state)))
                del state[oldest]
        state[workflow_id] = wf
        if name:
            wf.name = name
        v = wf.versions.get(version)
        if v is None:
            if len(wf.versions) >= rule.keep_versions:
                oldest_version = min(wf.versions)
                if version < oldest_version:
                    return
                del wf.versions[oldest_version]
            v = wf.versions[version] = _Version(rule.sample_size)
        v.runs += 1
        v.failures += int(failed)
        if duration >= 0:
            v.durations.append(duration)
        wf.touched = True

    def _resolve(self, acct: OrderedAccount, workflow_id: str, wf: _Versions, T: int, why: str,
                 out: Changes) -> None:
        fired = wf.firing
        assert fired is not None
        out.append((T, 0, acct.account_id, workflow_id,
                    Alert(fired.alert_id, fired.kind, acct.account_id, workflow_id, wf.name, "resolved",
                          fired.severity, fired.started_at, _dt(T),
                          f"{wf.name} ({acct.account_id}): version {wf.fired_version} {why}", dict(fired.numbers))))
        wf.firing, wf.fired_version, wf.clear_streak = None, -1, 0

    def _tick(self, acct: OrderedAccount, T: int, out: Changes) -> None:
        rule = self.rule
        for workflow_id, wf in acct.state.items():
            if not wf.touched:
                continue
            wf.touched = False
            if len(wf.versions) < 2:
                continue
            newest, previous = sorted(wf.versions)[-2:][::-1]
            if wf.firing is not None and wf.fired_version != newest:
                self._resolve(acct, workflow_id, wf, T, f"superseded by version {newest}", out)
            found = rule.judge(wf.versions[newest], wf.versions[previous])
            if wf.firing is not None:
                if found is not None:
                    wf.clear_streak = 0
                else:
                    wf.clear_streak += 1
                    if wf.clear_streak >= rule.clear_checks:
                        self._resolve(acct, workflow_id, wf, T, "no longer worse than the previous one", out)
                continue
            if found is None:
                continue
            found["version"], found["previous_version"] = float(newest), float(previous)
            parts = []
            if "p_value" in found and found["p_value"] <= rule.max_p_value:
                parts.append(f"{int(found['new_failures'])} of {int(found['new_runs'])} runs failed "
                             f"({_fmt_pct(found['new_rate'])}) against {_fmt_pct(found['previous_rate'])} "
                             f"(p={found['p_value']:.1g})")
            if "slower" in found:
                parts.append(f"p{rule.quantile * 100:g} duration {_fmt_duration(found['new_p95_seconds'])} against "
                             f"{_fmt_duration(found['previous_p95_seconds'])}")
            started = _dt(T)
            severity = "critical" if found["new_rate"] >= 0.5 else "warning"
            wf.firing = Alert(_alert_id(rule.kind, acct.account_id, workflow_id, started), rule.kind,
                              acct.account_id, workflow_id, wf.name, "firing", severity, started, None,
                              f"{wf.name} ({acct.account_id}): version {newest} worse than version {previous}: "
                              + "; ".join(parts), found)
            wf.fired_version, wf.clear_streak = newest, 0
            out.append((T, 1, acct.account_id, workflow_id, wf.firing))

    def _due(self, acct: OrderedAccount) -> int | None:
        return None
