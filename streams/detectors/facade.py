"""``Detectors``: every detector fed from contract events and advanced together; ``describe``
states the rules with their thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from streams.detectors.alert import Alert, Watermark
from streams.detectors.error_signature import NewErrorSignatureDetector
from streams.detectors.failure_spike import FailureSpikeDetector
from streams.detectors.queue_growth import QueueGrowthDetector
from streams.detectors.run_deadline import RunDeadlineDetector
from streams.detectors.silent_workflow import SilentWorkflowDetector
from streams.detectors.stuck_run import StuckRunDetector
from streams.detectors.version_regression import VersionRegressionDetector

_NAMES = ("failure_spike", "account_failure_spike", "stuck_run", "queue_growth", "silent_workflow",
          "version_regression", "error_signature", "run_deadline")


def _parse_ts(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    dt = datetime.fromisoformat(str(value).replace("z", "Z").replace("Z", "+00:00"))
    if dt.tzinfo is None:
        raise ValueError(f"time without offset: {value!r}")
    return dt


class _Default(Enum):
    """The "default detector" argument of ``Detectors`` (``None`` means "none")."""

    DEFAULT = "default"


_DEFAULT: Final = _Default.DEFAULT


class Detectors:
    """All detectors together: failure spikes per workflow, failure spikes per account,
    stuck runs, queue growth, silent workflows, version regressions, new error signatures and
    run deadlines. ``advance`` returns their alerts concatenated in that order
    (within one detector: by minute evaluated, then account and subject). Each argument
    defaults to a detector with the default thresholds (``account_failure_spike``: a
    ``FailureSpikeDetector(scope="account")``); pass ``None`` to leave a detector out."""

    def __init__(self, *, failure_spike: FailureSpikeDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 account_failure_spike: FailureSpikeDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 stuck_run: StuckRunDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 queue_growth: QueueGrowthDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 silent_workflow: SilentWorkflowDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 version_regression: VersionRegressionDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 error_signature: NewErrorSignatureDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 run_deadline: RunDeadlineDetector | None | Literal[_Default.DEFAULT] = _DEFAULT) -> None:
        if failure_spike is _DEFAULT:
            failure_spike = FailureSpikeDetector()
        if account_failure_spike is _DEFAULT:
            account_failure_spike = FailureSpikeDetector(scope="account")
        if stuck_run is _DEFAULT:
            stuck_run = StuckRunDetector()
        if queue_growth is _DEFAULT:
            queue_growth = QueueGrowthDetector()
        if silent_workflow is _DEFAULT:
            silent_workflow = SilentWorkflowDetector()
        if version_regression is _DEFAULT:
            version_regression = VersionRegressionDetector()
        if error_signature is _DEFAULT:
            error_signature = NewErrorSignatureDetector()
        if run_deadline is _DEFAULT:
            run_deadline = RunDeadlineDetector()
        if account_failure_spike is not None and account_failure_spike.scope != "account":
            raise ValueError("account_failure_spike needs scope='account'")
        self.failure_spike: FailureSpikeDetector | None = failure_spike
        self.account_failure_spike: FailureSpikeDetector | None = account_failure_spike
        self.stuck_run: StuckRunDetector | None = stuck_run
        self.queue_growth: QueueGrowthDetector | None = queue_growth
        self.silent_workflow: SilentWorkflowDetector | None = silent_workflow
        self.version_regression: VersionRegressionDetector | None = version_regression
        self.error_signature: NewErrorSignatureDetector | None = error_signature
        self.run_deadline: RunDeadlineDetector | None = run_deadline

    def observe_signal(self, account: str, kind: str, workflow_id: str, workflow_name: str, run_id: str,
                       ts: datetime, started_at: datetime | None = None, failed: bool = False, version: int = 0,
                       error_code: str = "", error_class: str = "") -> None:
        """One run lifecycle signal (``kind``: ``q`` queued, ``s`` started, ``f`` finished) into
        every detector that reads it."""
        if kind == "q":
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, 1, 0)
            if self.silent_workflow is not None:
                self.silent_workflow.run_arrived(account, workflow_id, workflow_name, ts)
        elif kind == "s":
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, -1, 1)
            if self.stuck_run is not None:
                self.stuck_run.run_started(account, workflow_id, workflow_name, run_id, ts)
            if self.run_deadline is not None:
                self.run_deadline.run_started(account, workflow_id, workflow_name, run_id, ts)
        elif kind == "f":
            if self.queue_growth is not None:
                self.queue_growth.lifecycle(account, ts, 0, -1)
            if self.stuck_run is not None:
                self.stuck_run.run_finished(account, workflow_id, run_id, started_at, ts)
            if self.run_deadline is not None:
                self.run_deadline.run_finished(account, workflow_id, run_id, started_at, ts)
            for det in (self.failure_spike, self.account_failure_spike):
                if det is not None:
                    det.observe(account, workflow_id, workflow_name, ts, failed)
            if self.version_regression is not None:
                self.version_regression.run_finished(account, workflow_id, workflow_name, version, started_at, ts,
                                                     failed)
            if self.error_signature is not None:
                self.error_signature.run_finished(account, workflow_id, workflow_name, ts, failed, error_code,
                                                  error_class)

    def observe_event(self, event: Mapping[str, Any]) -> None:
        """Feed one contract event (a dict as in ``shared/event-contract.md``; deduplicated by
        the caller). Step events are ignored. A run counts as failed when its status is
        ``failed``."""
        typ = event.get("type")
        kind = {"run.queued": "q", "run.started": "s", "run.finished": "f"}.get(str(typ))
        if kind is None:
            return
        started = event.get("started_at") if kind == "f" else None
        error = event.get("error") or {}
        failed = kind == "f" and event.get("status") == "failed"
        self.observe_signal(event["account_id"], kind, event["workflow_id"], event.get("workflow_name") or "",
                            event["run_id"], _parse_ts(event["ts"]), None if started is None else _parse_ts(started),
                            failed, int(event.get("workflow_version") or 0),
                            str(error.get("code") or "") if failed else "",
                            str(error.get("class") or "") if failed else "")

    def advance(self, watermark: Watermark) -> list[Alert]:
        """Judge what the watermark passed: one time for every account, or ``{account_id: time}``
        for those accounts only (``EventClocks.moved()``: each account by its own clock)."""
        out: list[Alert] = []
        for name in _NAMES:
            det = getattr(self, name)
            if det is not None:
                out.extend(det.advance(watermark))
        return out

    def state_sizes(self) -> dict[str, dict[str, int]]:
        return {n: getattr(self, n).state_sizes() for n in _NAMES if getattr(self, n) is not None}

    def describe(self) -> str:
        """The rules with the thresholds actually configured, in plain words."""
        parts = [getattr(self, n).describe() for n in _NAMES if getattr(self, n) is not None]
        parts.append("All times are event times: a minute is evaluated once the watermark of its account (the "
                     "latest event time of that account, never ahead of the wall clock by more than a small "
                     "tolerance, minus the allowed lateness) has passed its end; each alert is reported once when "
                     "it starts firing and once when it resolves, with the same alert_id.")
        return "\n\n".join(parts)


def describe() -> str:
    """The rules with their default thresholds, in plain words (for the docs)."""
    return Detectors().describe()
