"""The worker's alert feed (``streams.alerting``): one watermark per account, capped at the
wall clock, counting too-late events per account; and the webhook, whose URL is a secret that
never reaches a log line, even when the delivery fails with an error that quotes it."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from streams.alerting import StreamAlerts, WebhookNotifier, redact_url, scrub
from streams.detectors import Alert

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LATENESS = timedelta(minutes=2)


def _event(account: str, run_id: str, type_: str, at: datetime, **extra) -> SimpleNamespace:
    """What ``StreamAlerts.observe`` reads of a validated event (a stand-in: a future-dated one
    may not pass validation, and the feed must be safe if it does)."""
    fields = {"account_id": account, "run_id": run_id, "type": type_, "ts": at, "workflow_id": "wf",
              "workflow_name": "WF", "started_at": None, "status": None}
    fields.update(extra)
    return SimpleNamespace(**fields)


def _finished(account: str, run_id: str, at: datetime, status: str) -> SimpleNamespace:
    return _event(account, run_id, "run.finished", at, started_at=at - timedelta(seconds=20),
                  status=SimpleNamespace(value=status))


def test_a_future_dated_account_moves_only_its_own_clock_and_only_to_the_wall_clock():
    feed = StreamAlerts(LATENESS, now=lambda: NOW)
    feed.observe(_event("acme", "a1", "run.started", NOW - timedelta(minutes=1)))
    feed.observe(_event("mallory", "m1", "run.started", NOW + timedelta(days=2)))
    feed.observe(_event("mallory", "m2", "run.started", datetime(9999, 12, 31, tzinfo=UTC)))
    feed.advance()
    assert feed.watermarks.watermark("mallory") == NOW + timedelta(seconds=60) - LATENESS
    assert feed.watermarks.watermark("acme") == NOW - timedelta(minutes=1) - LATENESS
    # acme's next events are on time, however far ahead mallory claims to be
    feed.observe(_event("acme", "a2", "run.started", NOW - timedelta(minutes=2)))
    assert feed.too_late == 0
    feed.observe(_event("acme", "a3", "run.started", NOW - timedelta(minutes=4)))
    assert feed.too_late == 1          # late against acme's own watermark
    # nothing of acme was judged beyond acme's watermark: its runs in flight are not stuck
    assert [a for a in feed.advance() if a.account_id == "acme"] == []


def test_a_spike_in_one_account_fires_although_another_account_is_dated_days_ahead():
    """A compact live attack on the feed: mallory first, then 2 h of acme history and a spike."""
    clock = {"now": NOW - timedelta(hours=2)}
    feed = StreamAlerts(LATENESS, now=lambda: clock["now"])
    feed.observe(_event("mallory", "m1", "run.started", NOW + timedelta(days=2)))
    raised = feed.advance()
    start = NOW - timedelta(hours=2)
    for i in range(2 * 60 * 6):                  # 6 runs a minute, 2% failing, then 60% for 10 minutes
        at = start + timedelta(seconds=10 * i)
        spiking = at >= NOW - timedelta(minutes=15)
        failed = (i % 50 == 0) if not spiking else (i % 5 < 3)
        clock["now"] = at
        feed.observe(_event("acme", f"r{i}", "run.started", at - timedelta(seconds=20)))
        feed.observe(_finished("acme", f"r{i}", at, "failed" if failed else "success"))
        raised += feed.advance()
    spikes = [a for a in raised if a.kind == "failure_spike" and a.account_id == "acme" and a.state == "firing"]
    assert {a.subject for a in spikes} == {"wf", "acme"}
    assert not [a for a in raised if a.kind == "stuck_run"]


# --------------------------------------------------------------------------- the webhook's secret


SECRET_PATH = "/services/T0SECRETPATH/B1SECRETPATH"
SECRET_QUERY = "token=sekrit-QUERY-value"


def _alert() -> Alert:
    return Alert("failure_spike:acme:wf:20261201T0800", "failure_spike", "acme", "wf", "WF", "firing", "warning",
                 NOW, None, "WF (acme): 6 of 10 runs failed", {"window_runs": 10.0})


class _Failing(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _deliver_and_wait(notifier: WebhookNotifier) -> None:
    notifier.notify(_alert())
    deadline = time.monotonic() + 30
    while notifier.failed == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert notifier.failed == 1 and notifier.sent == 0


@pytest.mark.parametrize("how", ["server error", "unusable url"])
def test_a_failing_webhook_is_logged_without_its_secret_path_or_query(how, failing_endpoint, caplog):
    """The URL's path and query often are the credential (Slack, Teams, ...): a failed delivery
    is logged with scheme and host only, also when the error message itself quotes the URL
    (http.client names the offending URL when it holds a space)."""
    path = SECRET_PATH if how == "server error" else SECRET_PATH + " x"
    url = f"http://127.0.0.1:{failing_endpoint}{path}?{SECRET_QUERY}"
    caplog.set_level(logging.DEBUG)
    notifier = WebhookNotifier(url, timeout=5)
    _deliver_and_wait(notifier)
    text = caplog.text + repr(notifier)
    assert "alert webhook" in caplog.text and f"127.0.0.1:{failing_endpoint}" in caplog.text
    for secret in ("T0SECRETPATH", "B1SECRETPATH", "sekrit-QUERY-value", "token="):
        assert secret not in text, secret


def test_redaction_keeps_scheme_and_host_only():
    assert redact_url("https://user:pw@hooks.example.com:8443/a/b?token=x#f") == "https://hooks.example.com:8443/***"
    assert redact_url("not a url") == "***"
    assert redact_url("http://[::1]:9/x") == "http://[::1]:9/***"
    url = "https://hooks.example.com/services/T0/SECRET%20X?token=abc123"
    message = f"bad request for {url} (path /services/T0/SECRET X, query token=abc123)"
    cleaned = scrub(message, url)
    assert "SECRET" not in cleaned and "abc123" not in cleaned
    # a path segment or query value quoted on its own is scrubbed too
    assert scrub("token abc123 expired for workspace T0XYZ", "https://h.example/a/T0XYZ?t=abc123") == \
        "token *** expired for workspace ***"
