"""The sample-file pipeline test against real Kafka (KRaft) and ClickHouse server containers.

Runs where a Docker engine is reachable (a developer laptop, a CI with Docker); skips cleanly
elsewhere, where the same assertions run on the embedded stack (test_sample_pipeline.py).
"""

from __future__ import annotations

import sys

import pytest

from embedded.processes import spawn, stop
from runlens.settings import Settings
from sinks.clickhouse import connect
from tests.helpers import cli_env, run_cli
from tests.integration.sample_expectations import assert_sample_ingested, wait_for_sample

pytestmark = [pytest.mark.integration, pytest.mark.docker]

KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
CLICKHOUSE_IMAGE = "clickhouse/clickhouse-server:24.8"


def _docker_engine_reachable() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


@pytest.mark.skipif(not _docker_engine_reachable(), reason="no Docker engine reachable")
def test_sample_through_kafka_and_clickhouse_containers(tmp_path, run_prefix, sample_events_path):
    from testcontainers.community.clickhouse import ClickHouseContainer
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer(KAFKA_IMAGE).with_kraft() as kafka, \
            ClickHouseContainer(CLICKHOUSE_IMAGE, username="runlens", password="runlens") as clickhouse:
        dsn = (f"http://runlens:runlens@{clickhouse.get_container_host_ip()}:"
               f"{clickhouse.get_exposed_port(8123)}")
        settings = Settings(data_dir=tmp_path, brokers=kafka.get_bootstrap_server(), warehouse_dsn=dsn,
                            topic_prefix=run_prefix, database=run_prefix)
        worker = spawn([sys.executable, "-m", "runlens", "worker"], log_file=tmp_path / "worker.log",
                       env=cli_env(settings))
        try:
            published = run_cli(settings, "publish", str(sample_events_path))
            assert published.returncode == 0, published.stderr
            client = connect(dsn, database=run_prefix)
            wait_for_sample(client, f"file:{sample_events_path}", timeout=180)
            assert_sample_ingested(client, f"file:{sample_events_path}")
        finally:
            stop(worker)
