"""Shared fixtures. Paths to test data; every run gets its own topic/database prefix."""

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
