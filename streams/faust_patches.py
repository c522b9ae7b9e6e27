"""A fix for a faust-streaming defect that loses records, applied before the worker's app starts.

After a rebalance, an app with tables (the worker's ``detector-state``) reads the changelogs with
the flow of records running, then ``Recovery.on_recovery_completed`` resumes the stream partitions,
seeks them to their committed offsets and resumes the flow, which empties every stream's queue.
Records fetched in between are delivered and then dropped from the queue, and since the consumer's
read offset has moved past them they are never fetched again: their offsets are never
acknowledged, and Faust, which commits only a partition's contiguous acknowledged offsets, never
commits that partition again (faust-streaming issue 596, open; the same order was fixed for apps
without tables in faust-streaming pull request 217). Measured here: 3 runs in 30 of the
killed-worker alert test stalled with a partition's lag stuck for good.

The fix stops the flow before the stream partitions are resumed and sought, as the table-less
path does, so nothing is delivered until the queues have been emptied; the original method then
resumes the flow. Idempotent: applying it twice wraps once.
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

    on_recovery_completed.stops_flow_first = True  # type: ignore[attr-defined]  # marks the wrapper
    Recovery.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]  # the fix itself
