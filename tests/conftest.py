"""Shared fixtures. Paths to test data; every run gets its own topic/database prefix; the
embedded stack (real Tansu broker, real Faust worker process, chDB owned by the worker and
read through its endpoint), started once per test session when a test asks for it; and
``run_cli``, the one way tests run the command line in this process."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, Protocol

import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def sample_events_path() -> Path:
    """The contract's sample: 9 valid events (e7 delivered twice) and 2 bad lines."""
    return FIXTURES / "sample-events.ndjson"


@pytest.fixture(scope="session")
def run_prefix() -> str:
    """A random prefix for topics and databases, unique to this test run."""
    return f"t{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory, run_prefix):
    from runlens.settings import Settings

    return Settings(data_dir=tmp_path_factory.mktemp("stack"), topic_prefix=run_prefix,
                    database=run_prefix, log_level="INFO")


@pytest.fixture(scope="session")
def embedded_stack(stack_settings):
    from embedded.stack import EmbeddedStack

    with EmbeddedStack(stack_settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def reader(embedded_stack, stack_settings):
    """A clickhouse-connect client reading the warehouse through the worker's read endpoint, with
    the credentials from the stack file (as every CLI command finds them)."""
    from embedded.stack import resolve_reader

    client = resolve_reader(stack_settings).connect(stack_settings.database)
    yield client
    client.close()


class CliResult(NamedTuple):
    """What one ``runlens`` invocation did: its exit code and everything it printed."""

    code: int
    stdout: str
    stderr: str


class RunCli(Protocol):
    def __call__(self, *argv: str, env: Mapping[str, str | None] | None = None) -> CliResult: ...


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> RunCli:
    """``run_cli("query", "SELECT 1", env={...})``: runlens's ``main`` in this process, its output
    captured, its exit code as the shell would see it (0 when it returns). ``env`` sets variables
    for this test (None removes one); the rest of the environment is the test's."""
    from runlens.cli import main

    def run(*argv: str, env: Mapping[str, str | None] | None = None) -> CliResult:
        for key, value in (env or {}).items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, value)
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
