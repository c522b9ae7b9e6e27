"""Shared fixtures. Paths to test data; every run gets its own topic/database prefix; the
embedded stack (real Tansu broker, real Faust worker process, chDB owned by the worker and
read through its endpoint), started once per test session when a test asks for it."""

from __future__ import annotations

import secrets
from pathlib import Path

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
