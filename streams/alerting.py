"""Delivers what the detectors raise (``streams.detection``).

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
from typing import Any

import orjson

from streams.detectors import Alert

log = logging.getLogger(__name__)


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
                    if attempt == 2:   # logged before counted: who sees the count finds the line
                        log.warning("alert webhook %s failed: %s: %s", self.endpoint, type(exc).__name__,
                                    scrub(str(exc), self.url))
                        self.failed += 1
                    else:
                        threading.Event().wait(0.5 * (attempt + 1))

    def __repr__(self) -> str:
        return f"WebhookNotifier({self.endpoint!r}, sent={self.sent}, failed={self.failed})"
