"""The embedded stack for integration tests: real Tansu broker, real Faust worker process,
chDB owned by the worker and read through its endpoint. One stack per test session, with a
random topic prefix and database."""

from __future__ import annotations

import pytest

from embedded.stack import EmbeddedStack
from runlens.settings import Settings
from sinks.clickhouse import connect


@pytest.fixture(scope="session")
def stack_settings(tmp_path_factory, run_prefix) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("stack"), topic_prefix=run_prefix,
                    database=run_prefix, log_level="INFO")


@pytest.fixture(scope="session")
def embedded_stack(stack_settings):
    with EmbeddedStack(stack_settings) as stack:
        yield stack


@pytest.fixture(scope="session")
def reader(embedded_stack, stack_settings):
    """A clickhouse-connect client reading the warehouse through the worker's read endpoint."""
    client = connect(embedded_stack.query_url, database=stack_settings.database)
    yield client
    client.close()
