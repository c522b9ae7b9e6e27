"""A patch of faust-streaming applied before the worker's app starts: the consumer's fetch wait
(Faust has no setting for it).

Not patched (tried and withdrawn): faust-streaming issue 596. After a table recovery Faust resumes
and seeks the stream partitions while records flow, then empties the stream queues, so records
fetched in between can be dropped and their partition's commits stall. Stopping the flow around
that step fixed the stall but kept the worker from moving again after a broker restart.
"""

from __future__ import annotations

from typing import Any

FETCH_MAX_WAIT_MS = 100
"""How long a fetch may wait at the broker for data. Faust fixes aiokafka's at 1,500 ms; Kafka
answers a waiting fetch as soon as data arrives, but Tansu (the embedded broker) lets it run
out, which was measured here as ~600 ms of added latency per event at low rates (16 ms at
100). On real Kafka the shorter wait only means more empty fetches while idle."""


def shorten_fetch_wait(max_wait_ms: int) -> None:
    """Make the worker's Kafka consumer use ``max_wait_ms`` (Faust has no setting for it)."""
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    original = getattr(thread._create_worker_consumer, "runlens_original", thread._create_worker_consumer)

    def create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms   # read when the consumer starts its fetcher
        return consumer

    # Faust has no setting for it: patch the factory method (once; the original is kept on the patch)
    create_worker_consumer.runlens_original = original  # type: ignore[attr-defined]  # a marker on our function
    thread._create_worker_consumer = create_worker_consumer  # type: ignore[method-assign]  # the patch itself
