"""Feeds the detectors from the worker's new events and delivers what they raise.

An alert state change (firing, resolved) goes to the alerts topic, the ``alert_events``
table and, when configured, a webhook. Alert ids are deterministic, so a change delivered
twice (a retry, a restart that re-detects) is stored once. The webhook is best effort:
posted from a background thread with a few retries; a dead webhook never stalls ingestion.
Its URL is a secret (it often carries a token in its path or query): it appears in no log
line and no error message, only its scheme and host (``redact_url``).
"""

from __future__ import annotations

import logging
import queue
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.events import Event
from schemas.fast import FastEvent
from streams.detectors import AccountWatermarks, Alert, Detectors

log = logging.getLogger(__name__)


FUTURE_TOLERANCE = timedelta(seconds=60)
"""How far ahead of the worker's wall clock an event may move its account's clock. Validation
may accept events a little further ahead (engines' clocks drift); they are stored and counted,
their account's clock simply stops at wall clock + this tolerance."""


IDLE_TIMEOUT = timedelta(seconds=30)
"""How long an account's input must be quiet (its partitions read to their end, nothing of it
arriving) before its watermark follows the wall clock."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StreamAlerts:
    """The detectors of one worker, fed in event time with one watermark per account
    (``AccountWatermarks``: from one clock per account and input partition, held back by lagging
    partitions, following the wall clock once the input is quiet for ``idle``): ``lateness``
    delays each evaluation so out-of-order events up to that age still count, and no account's
    clock runs ahead of the wall clock by more than ``future_tolerance``. Not durable: after a
    restart the watermarks and baselines start empty."""

    def __init__(self, lateness: timedelta, detectors: Detectors | None = None, *,
                 future_tolerance: timedelta = FUTURE_TOLERANCE, idle: timedelta = IDLE_TIMEOUT,
                 now: Callable[[], datetime] = _utc_now):
        self.detectors = detectors or Detectors()
        self.lateness = lateness
        self.watermarks = AccountWatermarks(lateness, future_tolerance, idle)
        self._now = now

    @property
    def too_late(self) -> int:
        """Events read after their account's watermark had passed them (counted, not judged)."""
        return self.watermarks.stats["too_late"]

    def observe(self, event: Event | FastEvent, partition: int = 0, now: datetime | None = None) -> None:
        """One new (deduplicated) event read from input ``partition`` at wall-clock time ``now``
        (default: the clock given at construction). It counts as too late for alerting when it is
        older than its own account's watermark (``too_late``; aggregates still include it)."""
        ts = event.ts
        self.watermarks.observe(event.account_id, partition, ts, self._now() if now is None else now)
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

    def lagging(self, partitions: Iterable[int]) -> None:
        """The input partitions that hold records not read yet (see ``AccountWatermarks``)."""
        self.watermarks.lagging(partitions)

    def advance(self, now: datetime | None = None, *, every_account: bool = False) -> list[Alert]:
        """Judge what the watermarks of the accounts that sent events since the last call (or of
        every account: what the wall clock alone moves) have made judgeable."""
        moved = self.watermarks.moved(self._now() if now is None else now, every_account=every_account)
        return self.detectors.advance(moved) if moved else []


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


def redact_url(url: str) -> str:
    """``scheme://host[:port]/***``: enough to tell which endpoint, nothing of its secret parts
    (user info, path, query, fragment). ``***`` when the URL cannot be parsed."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "***"
    if not parts.scheme or not host:
        return "***"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    return f"{parts.scheme}://{netloc}/***"


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. an exception message) with every secret part of ``url`` replaced by ``***``."""
    secrets = {url}
    try:
        parts = urllib.parse.urlsplit(url)
        secrets.update(x for x in (parts.path, parts.query, parts.fragment, parts.netloc, parts.username,
                                   parts.password) if x and x != "/")
        secrets.update(parts.path.split("/"))  # each segment may be a token on its own
        secrets.update(value for _, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        secrets.update(urllib.parse.unquote(x) for x in list(secrets))
    except ValueError:
        pass
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:  # a host's or path's few letters are no secret and would garble the text
            text = text.replace(secret, "***")
    return text


class WebhookNotifier:
    """Posts alerts as JSON to a URL from a daemon thread; drops (and logs) after 3 failures.
    The URL never appears in a log line or in ``repr``: only ``redact_url(url)``."""

    def __init__(self, url: str, timeout: float = 5.0):
        self.url, self.timeout = url, timeout
        self.endpoint = redact_url(url)
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
                except Exception as exc:  # noqa: BLE001 - best effort, reported in logs (URL scrubbed)
                    if attempt == 2:
                        self.failed += 1
                        log.warning("alert webhook %s failed: %s: %s", self.endpoint, type(exc).__name__,
                                    scrub(str(exc), self.url))
                    else:
                        threading.Event().wait(0.5 * (attempt + 1))

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.endpoint!r}, sent={self.sent}, failed={self.failed})"
