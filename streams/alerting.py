"""Feeds the detectors from the worker's new events and delivers what they raise.

An alert state change (firing, resolved) goes to the alerts topic, the ``alert_events``
table and, when configured, a webhook. Alert ids are deterministic, so a change delivered
twice (a retry, a restart that re-detects) is stored once. The webhook is best effort:
posted from a background thread with a few retries; a dead webhook never stalls ingestion.
"""

from __future__ import annotations

import orjson
import logging
import queue
import threading
import urllib.request
from datetime import datetime, timedelta
from typing import Any

from schemas.events import Event
from streams.detectors import Alert, Detectors

log = logging.getLogger(__name__)


class StreamAlerts:
    """The detectors of one worker, fed in event time; ``lateness`` delays each evaluation so
    out-of-order events up to that age still count."""

    def __init__(self, lateness: timedelta, detectors: Detectors | None = None):
        self.detectors = detectors or Detectors()
        self.lateness = lateness
        self.max_ts: datetime | None = None
        self.too_late = 0

    def observe(self, event: Event) -> None:
        """One new (deduplicated) event."""
        ts = event.ts
        if self.max_ts is not None and ts < self.max_ts - self.lateness:
            self.too_late += 1   # counted and reported; aggregates still include it
        if self.max_ts is None or ts > self.max_ts:
            self.max_ts = ts
        d = self.detectors
        if event.type == "run.queued":
            if d.queue_growth is not None:
                d.queue_growth.lifecycle(event.account_id, ts, 1, 0)
        elif event.type == "run.started":
            if d.queue_growth is not None:
                d.queue_growth.lifecycle(event.account_id, ts, -1, 1)
            if d.stuck_run is not None:
                d.stuck_run.run_started(event.account_id, event.workflow_id, event.workflow_name, event.run_id, ts)
        elif event.type == "run.finished":
            if d.queue_growth is not None:
                d.queue_growth.lifecycle(event.account_id, ts, 0, -1)
            if d.stuck_run is not None:
                d.stuck_run.run_finished(event.account_id, event.workflow_id, event.run_id, event.started_at, ts)
            failed = event.status.value == "failed"
            for det in (d.failure_spike, d.account_failure_spike):
                if det is not None:
                    det.observe(event.account_id, event.workflow_id, event.workflow_name, ts, failed)

    def advance(self) -> list[Alert]:
        if self.max_ts is None:
            return []
        return self.detectors.advance(self.max_ts - self.lateness)


def alert_document(alert: Alert) -> dict[str, Any]:
    """The alert as JSON-ready data (topic value, webhook body)."""
    return {
        "alert_id": alert.alert_id, "kind": alert.kind, "account_id": alert.account_id,
        "subject": alert.subject, "subject_name": alert.subject_name, "state": alert.state,
        "severity": alert.severity, "started_at": alert.started_at.isoformat(),
        "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
        "summary": alert.summary, "numbers": dict(alert.numbers),
    }


def alert_columns(alerts: list[Alert]) -> dict[str, list[Any]]:
    return {
        "alert_id": [a.alert_id for a in alerts], "kind": [a.kind for a in alerts],
        "account_id": [a.account_id for a in alerts], "subject": [a.subject for a in alerts],
        "subject_name": [a.subject_name for a in alerts], "state": [a.state for a in alerts],
        "severity": [a.severity for a in alerts], "started_at": [a.started_at for a in alerts],
        "resolved_at": [a.resolved_at for a in alerts], "summary": [a.summary for a in alerts],
        "numbers": [{k: float(v) for k, v in a.numbers.items()} for a in alerts],
    }


class WebhookNotifier:
    """Posts alerts as JSON to a URL from a daemon thread; drops (and logs) after 3 failures."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url, self.timeout = url, timeout
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=10_000)
        threading.Thread(target=self._run, name="alert-webhook", daemon=True).start()

    def notify(self, alert: Alert) -> None:
        try:
            self._queue.put_nowait(alert_document(alert))
        except queue.Full:
            self.failed += 1

    def _run(self) -> None:
        while True:
            doc = self._queue.get()
            body = orjson.dumps(doc)
            for attempt in range(3):
                try:
                    request = urllib.request.Request(self.url, data=body, method="POST",
                                                     headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=self.timeout):
                        self.sent += 1
                        break
                except Exception as exc:  # noqa: BLE001 - best effort, reported in logs
                    if attempt == 2:
                        self.failed += 1
                        log.warning("alert webhook %s failed: %s", self.url, exc)
                    else:
                        threading.Event().wait(0.5 * (attempt + 1))
