"""The one root of every error runlens raises on purpose, PEP 249-style (as clickhouse-connect's
``Error`` / ``OperationalError`` / ``ProgrammingError``): callers catch a kind, not a list.

- ``RetryableError``: the same call may succeed later (broker or warehouse unreachable, a
  transient server code). Workers retry it with backoff and consume nothing more meanwhile.
- ``PoisonError``: this input will never succeed (a refused statement, an event the warehouse
  cannot take). Never retried blindly: dead-lettered, or reported, and the rest goes on.
- ``InputError``: a value from a person or a file is malformed or out of range (a CLI argument,
  a spec, a filter). The command line prints it as one line and exits 2.
- ``UnavailableError``: something needed is not there (no running stack, a missing file); the
  command line prints one line and exits 1.

Every class carries a ``code`` (a stable short name, for logs and tests) and may carry the
server's numeric ``server_code``. Nothing here imports any other runlens module.
"""

from __future__ import annotations


class RunlensError(Exception):
    """Root of runlens' errors. ``code``: stable short name; ``server_code``: ClickHouse or
    Kafka error code when the error came from one, else None."""

    code = "runlens"

    def __init__(self, message: str = "", *, server_code: int | None = None):
        super().__init__(message)
        self.server_code = server_code


class RetryableError(RunlensError):
    """Transient: the same call may succeed later."""

    code = "retryable"


class PoisonError(RunlensError):
    """Permanent for this input: retrying the same thing will fail the same way."""

    code = "poison"


class InputError(RunlensError, ValueError):
    """A malformed or out-of-range value from a person or a file (exit code 2 at the CLI)."""

    code = "input"


class UnavailableError(RunlensError):
    """Something needed is not there or not reachable right now (exit code 1 at the CLI)."""

    code = "unavailable"
