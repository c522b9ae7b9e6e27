"""New error signatures: an error a workflow has never failed with, or not for 30 days (rule
in the ``streams.detectors`` package docstring)."""

from __future__ import annotations

from collections import OrderedDict
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

_DAY_MS = 86_400_000


class _Open:
    """A firing signature: its alert, last occurrence (ms) and occurrences so far."""

    __slots__ = ("alert", "last", "count")

    def __init__(self, alert: Alert, last: int) -> None:
        self.alert, self.last, self.count = alert, last, 1


class _Errors:
    """One workflow's signatures (last seen ms, least recently seen first), the firing ones
    (signature -> [alert, last seen ms, occurrences]) and how much history it has."""

    __slots__ = ("name", "first_ms", "finished", "seen", "firing")

    def __init__(self, name: str, first_ms: int) -> None:
        self.name = name
        self.first_ms = first_ms
        self.finished = 0
        self.seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.firing: dict[tuple[str, str], _Open] = {}


def signature_subject(workflow_id: str, code: str, error_class: str) -> str:
    """The alert subject of a signature: ``workflow_id:code:class``."""
    return f"{workflow_id}:{code}:{error_class}"


class NewErrorSignatureDetector(RunLevelDetector):
    """A failed run whose error (code, class) the workflow has never failed with, or not for
    ``forget_days`` (event time). Judged only once the workflow is known: at least
    ``learn_minutes`` of its history and ``min_runs`` finished runs before the failure (so a
    workflow's first errors after a restart without state, or a new workflow's, are its
    baseline, not alerts). Fires once per signature, at the failure's time; resolves after
    ``quiet_minutes`` without it (resolved at its last occurrence + ``quiet_minutes``).
    Memory: ``max_signatures`` per workflow (least recently seen forgotten first; at most as
    many open at once), ``max_workflows`` per account."""

    kind = "new_error_signature"

    def __init__(self, *, forget_days: float = 30.0, quiet_minutes: float = 60.0, learn_minutes: float = 1440.0,
                 min_runs: int = 20, max_signatures: int = 256, max_workflows: int = 1_000,
                 max_accounts: int = 100_000) -> None:
        _require_at_least(1, max_signatures=max_signatures, max_workflows=max_workflows)
        _require_at_least(0, min_runs=min_runs, learn_minutes=learn_minutes)
        if forget_days <= 0 or quiet_minutes <= 0:
            raise ValueError("need forget_days > 0 and quiet_minutes > 0")
        self.forget_days, self.quiet_minutes, self.learn_minutes = float(forget_days), float(quiet_minutes), \
            float(learn_minutes)
        self.min_runs, self.max_signatures, self.max_workflows = int(min_runs), int(max_signatures), int(max_workflows)
        self._core = _SignatureCore(self, max_accounts)

    def run_finished(self, account_id: str, workflow_id: str, workflow_name: str, finished_at: datetime,
                     failed: bool, error_code: str = "", error_class: str = "") -> None:
        """A finished run; a failure with its error code and class (``""`` when unknown)."""
        self._core._push(account_id, (_ms(finished_at, "finished_at"), workflow_id, bool(failed),
                                      error_code if failed else "", error_class if failed else "", workflow_name))

    def state_sizes(self) -> dict[str, int]:
        accounts = self._core._accounts.values()
        return {"accounts": len(accounts), "workflows": sum(len(a.state) for a in accounts),
                "signatures": sum(len(e.seen) for a in accounts for e in a.state.values()),
                "pending": sum(len(a.pending) for a in accounts)}

    def describe(self) -> str:
        return (f"New error signature (each workflow): a failed run whose (error code, error class) the workflow "
                f"has never failed with, or not in the last {self.forget_days:g} days, once the workflow has "
                f">= {self.learn_minutes:g} min of history and >= {self.min_runs} finished runs. Fires once per "
                f"signature; resolves after {self.quiet_minutes:g} min without it.")


class _SignatureCore(OrderedDetector[NewErrorSignatureDetector]):
    def _apply(self, acct: OrderedAccount, item: Item, T: int, out: Changes) -> None:
        ts, workflow_id, failed, code, error_class, name = item
        rule, state = self.rule, acct.state
        errors: _Errors | None = state.pop(workflow_id, None)
        if errors is None:
            errors = _Errors(name or workflow_id, ts)
            if len(state) >= rule.max_workflows:
                oldest = next((k for k, e in state.items() if not e.firing), next(iter(state)))
                del state[oldest]
        state[workflow_id] = errors
        if name:
            errors.name = name
        known = errors.finished >= rule.min_runs and ts - errors.first_ms >= rule.learn_minutes * 60_000
        errors.finished += 1
        if not failed:
            return
        sig = (code, error_class)
        last = errors.seen.pop(sig, None)
        errors.seen[sig] = ts if last is None else max(last, ts)
        if len(errors.seen) > rule.max_signatures:
            old = next((s for s in errors.seen if s not in errors.firing), next(iter(errors.seen)))
            del errors.seen[old]
        firing = errors.firing.get(sig)
        if firing is not None:
            firing.last = max(firing.last, ts)
            firing.count += 1
            return
        if not known or (last is not None and ts - last < rule.forget_days * _DAY_MS):
            return
        if len(errors.firing) >= rule.max_signatures:    # a flood of new codes: the first ones are open
            self.stats["capped"] = self.stats.get("capped", 0) + 1
            return
        subject = signature_subject(workflow_id, code, error_class)
        started = _dt(ts)
        gap = "never seen before" if last is None else f"last seen {_fmt_duration((ts - last) / 1000.0)} ago"
        numbers = {"workflow_finished_runs": float(errors.finished),
                   "last_seen_days_ago": -1.0 if last is None else (ts - last) / _DAY_MS}
        alert = Alert(_alert_id(rule.kind, acct.account_id, subject, started), rule.kind, acct.account_id, subject,
                      errors.name, "firing", "warning", started, None,
                      f"{errors.name} ({acct.account_id}): a run failed with {code or '?'} ({error_class or '?'}), "
                      f"{gap} for this workflow", numbers)
        errors.firing[sig] = _Open(alert, ts)
        out.append((T, 1, acct.account_id, subject, alert))

    def _tick(self, acct: OrderedAccount, T: int, out: Changes) -> None:
        quiet = int(self.rule.quiet_minutes * 60_000)
        for errors in acct.state.values():
            if not errors.firing:
                continue
            for sig, opened in sorted(errors.firing.items()):
                alert, last, count = opened.alert, opened.last, opened.count
                if last + quiet > T:
                    continue
                del errors.firing[sig]
                numbers = dict(alert.numbers)
                numbers["occurrences"] = float(count)
                out.append((T, 0, acct.account_id, alert.subject,
                            Alert(alert.alert_id, alert.kind, alert.account_id, alert.subject, alert.subject_name,
                                  "resolved", alert.severity, alert.started_at, _dt(last + quiet),
                                  f"{alert.subject_name} ({alert.account_id}): no failure with {sig[0] or '?'} "
                                  f"({sig[1] or '?'}) for {self.rule.quiet_minutes:g} min ({count} in all)",
                                  numbers)))

    def _due(self, acct: OrderedAccount) -> int | None:
        quiet = int(self.rule.quiet_minutes * 60_000)
        dues = [f.last + quiet for e in acct.state.values() for f in e.firing.values()]
        return min(dues) if dues else None
