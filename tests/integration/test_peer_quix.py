"""The bench's peer yardstick P1 for real: a quix-streams application in its own venv consumes
multi-event records with bad lines among them and stores exactly the valid events in ``events``
of a warehouse process. Skips (with pip's reason) when the peer venv cannot be built here."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from runlens.bench import peer_quix as peer
from runlens.bench.common import encoded, live_events
from runlens.settings import Settings

pytestmark = pytest.mark.integration

BAD_LINES = [b"not json at all", b'{"type": "run.queued"}', b'{"event_id": 5, "schema_version": "x"}']


@pytest.fixture(scope="module")
def peer_venv():
    venv = peer.peer_venv_dir()
    reason = peer.ensure_peer_venv(venv)
    if reason is not None:
        pytest.skip(f"no peer venv: {reason}")
    return venv


def test_p1_stores_exactly_the_valid_events(peer_venv, tmp_path):
    from embedded.broker import start_broker
    from embedded.processes import stop
    from producers.kafka import CheckedProducer, EventBatcher, TopicSpec, ensure_topics
    from runlens.bench.yardsticks import warehouse_process
    from sinks.clickhouse import connect

    keys, values = encoded(live_events(7, datetime.now(UTC) - timedelta(hours=1)), 3000)
    sent_ids = {orjson.loads(value)["event_id"] for value in values}
    broker = start_broker(tmp_path / "broker.log")
    try:
        topic = "peer-test.events"
        ensure_topics(broker.bootstrap, [TopicSpec(topic, 3)])
        producer = CheckedProducer(broker.bootstrap)
        batcher = EventBatcher(producer, topic, linger=0.02)
        bad = 0
        for i, (key, value) in enumerate(zip(keys, values, strict=True)):
            batcher.send(key, value)
            if i % 100 == 0:   # bad lines inside the multi-event records, next to valid ones
                batcher.send(key, BAD_LINES[bad % len(BAD_LINES)])
                bad += 1
        batcher.flush()
        assert batcher.records < len(values)   # multi-event records, not one per event
        batcher.close()
        warehouse, dsn = warehouse_process(Settings(data_dir=tmp_path / "warehouse"), "peer_test")
        try:
            spec = peer.PeerSpec(brokers=broker.bootstrap, topic=topic, group="peer-test", dsn=dsn,
                                 database="peer_test", lines=len(values) + bad, timeout_s=240)
            doc, stderr = peer.run_peer(peer_venv, spec)
            assert doc["events"] == len(values) and doc["rejected"] == bad, (doc, stderr)
            client = connect(dsn, database="peer_test")
            try:
                stored = [row[0] for row in client.query("SELECT event_id FROM events").result_rows]
                partitions = {row[0] for row in client.query("SELECT DISTINCT source_partition FROM events")
                              .result_rows}
            finally:
                client.close()
            assert len(stored) == len(values) and set(stored) == sent_ids
            assert partitions <= {0, 1, 2} and len(partitions) > 1
            figures = peer.p1_figures(doc, None)
            assert figures["events"] == len(values) and figures["events_per_s"] > 0

            # timed as the pipeline: running and warmed up before the events are produced
            live_topic = "peer-test.live"
            ensure_topics(broker.bootstrap, [TopicSpec(live_topic, 3)])
            live = EventBatcher(producer, live_topic)
            warm, events = values[:50], values[50:1050]

            def warm_up() -> None:
                for value in warm:
                    live.send("warm", value.replace(b':"run_', b':"warm_run_'))
                live.flush()

            def send() -> float:
                started = time.perf_counter()
                for value in events:
                    live.send("live", value.replace(b':"run_', b':"live_run_'))
                live.flush()
                return started

            spec = peer.PeerSpec(brokers=broker.bootstrap, topic=live_topic, group="peer-test-live", dsn=dsn,
                                 database="peer_test", lines=len(warm) + len(events), timeout_s=240,
                                 warm_lines=len(warm))
            doc = peer.run_peer_live(peer_venv, spec, warm_up, send)
            assert doc["events"] == len(events) and doc["rejected"] == 0 and doc["seconds"] > 0, doc
            client = connect(dsn, database="peer_test")
            try:
                live_stored = client.query("SELECT count() FROM events WHERE startsWith(run_id, 'live_run_')"
                                           ).result_rows[0][0]
            finally:
                client.close()
            assert live_stored == len(events)
        finally:
            stop(warehouse, timeout=30)
        producer.close()
    finally:
        broker.stop()
