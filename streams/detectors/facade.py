"""``Detectors``: every detector fed from contract events and advanced together; ``describe``
states the rules with their thresholds."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Final, Literal

from streams.detectors.alert import Alert, Watermark
from streams.detectors.failure_spike import FailureSpikeDetector
from streams.detectors.queue_growth import QueueGrowthDetector
from streams.detectors.stuck_run import StuckRunDetector


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
    stuck runs, queue growth. ``advance`` returns their alerts concatenated in that order
    (within one detector: by minute evaluated, then account and subject). Each argument
    defaults to a detector with the default thresholds (``account_failure_spike``: a
    ``FailureSpikeDetector(scope="account")``); pass ``None`` to leave a detector out."""

    def __init__(self, *, failure_spike: FailureSpikeDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 account_failure_spike: FailureSpikeDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 stuck_run: StuckRunDetector | None | Literal[_Default.DEFAULT] = _DEFAULT,
                 queue_growth: QueueGrowthDetector | None | Literal[_Default.DEFAULT] = _DEFAULT) -> None:
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
        self.failure_spike: FailureSpikeDetector | None = failure_spike
        self.account_failure_spike: FailureSpikeDetector | None = account_failure_spike
        self.stuck_run: StuckRunDetector | None = stuck_run
        self.queue_growth: QueueGrowthDetector | None = queue_growth

    def observe_event(self, event: Mapping[str, Any]) -> None:
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
