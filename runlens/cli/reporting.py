"""Helpers the report commands share (`runlens report`, `runlens demo`, `runlens grafana`): the HTML
report file and one short line for a failed request. Imports no command module."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runlens.cli.common import UserError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

_CONNECTION_REASONS = (
    ("refused", "connection refused"), ("Name or service not known", "unknown host"),
    ("nodename nor servname", "unknown host"), ("Temporary failure in name resolution", "unknown host"),
    ("timed out", "timed out"), ("Timeout", "timed out"), ("CERTIFICATE_VERIFY_FAILED", "TLS certificate not trusted"),
    ("SSL", "TLS handshake failed"),
)


def reason(exc: Exception) -> str:
    """One short line for a request failure (connection errors carry a whole traceback of text)."""
    text = str(exc).strip() or exc.__class__.__name__
    for needle, short in _CONNECTION_REASONS:
        if needle in text:
            return short
    return text.split("\n")[0][:200]


def write_report(client: Client, out_path: str | Path, since: date, until: date,
                 variables: Mapping[str, Any] | None = None, warn: Callable[[str], None] | None = None) -> Path:
    """Write the report (``dashboards.report``) for ``[since, until]`` and these variable values
    (name -> value, comma-separated values or list; missing = All) and return its path.

    Raises the CLI's one-line error when the time range or a variable is unusable, when no panel
    could be queried (warehouse unreachable) or the file cannot be written; ``warn(text)`` is
    told about panels whose query failed when others worked, and about a failed "Last failures"
    section (the most recent failed runs, each with its details) and a failed "Workflows needing
    attention" section."""
    from dashboards import report as R

    try:
        since, until = R._utc(since), R._utc(until)
        if until <= since:
            raise ValueError("the report's time range is empty (until is not after since)")
        items = R.collect(client, since, until, variables)
        last = R.failures(client, since, until, variables)
        needing = R.attention(client, since, until, variables)
        page = R.render_html(items, since, until, R.variable_values(variables), failures=last, attention=needing)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    failed = [i for i in items if i.result.error]
    if failed and len(failed) == len(items):
        raise UserError(f"no panel could be queried: {failed[0].result.error}")
    if failed and warn:
        warn(f"{len(failed)} of {len(items)} panels failed, e.g. {failed[0].panel.title!r}: {failed[0].result.error}")
    if last.error and warn:
        warn(f"the 'Last failures' section failed: {last.error}")
    if needing.error and warn:
        warn(f"the 'Workflows needing attention' section failed: {needing.error}")
    path = Path(out_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {out_path}: {reason(exc)}") from None
    return path
