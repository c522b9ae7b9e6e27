"""Two patches of faust-streaming, applied before the worker's app starts: the consumer's fetch
wait (Faust has no setting for it), and a fix for a defect that drops records.

After a rebalance, an app with tables (the worker's ``detector-state``) reads the changelogs with
the flow of records running, then ``Recovery.on_recovery_completed`` resumes the stream partitions,
seeks them to their committed offsets and resumes the flow, which empties every stream's queue.
Records fetched in between are delivered and then dropped from the queue, and since the consumer's
read offset has moved past them they are never fetched again (faust-streaming issue 596, open; the
same order was fixed for apps without tables in faust-streaming pull request 217).

The fix stops the flow before the stream partitions are resumed and sought, as the table-less
path does, so nothing is delivered until the queues have been emptied; the original method then
resumes the flow. When the original returns early (another rebalance began meanwhile) the flow is
resumed as it was found, so the next recovery starts from a running flow as it would without the
patch. A record it still misses (one in the middle of its delivery when the flow stops) is found
and read by the worker (``streams.continuity``). Idempotent: applying it twice wraps once.
"""

from __future__ import annotations

from typing import Any

from faust.tables.recovery import Recovery


def stop_flow_until_streams_are_sought() -> None:
    """Patch ``Recovery.on_recovery_completed`` (see the module docstring)."""
    original = Recovery.on_recovery_completed
    if getattr(original, "stops_flow_first", False):
        return

    async def on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
        app: Any = self.app
        app.consumer.stop_flow()        # nothing is delivered from here until the flow resumes
        app.flow_control.suspend()
        await original(self, generation_id)
        if app.consumer_generation_id != generation_id:   # returned early: leave the flow as found
            app.flow_control.resume()
            app.consumer.resume_flow()

    on_recovery_completed.stops_flow_first = True  # type: ignore[attr-defined]  # marks the wrapper
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]  # the fix itself


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
