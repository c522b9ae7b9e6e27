"""Alert delivery (``streams.alerting``): the webhook, whose URL is a secret that never reaches
a log line, even when the delivery fails with an error that quotes it."""

from __future__ import annotations

import http.server
import logging
import threading
import time
from datetime import UTC, datetime

import pytest

from streams.alerting import WebhookNotifier, redact_url, scrub
from streams.detectors import Alert

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)

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
