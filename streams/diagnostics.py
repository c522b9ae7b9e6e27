"""Where the worker's consumer stands per partition, for a stuck partition's post-mortem, and
what its heap holds, for a growing one.

``consumer_positions`` reads Faust's own bookkeeping (the committed offset, the acknowledged
offsets not committed yet, the gaps it fills, the high water) and logs it; ``runlens worker``
writes it to the log on SIGUSR2, with ``heap_lines`` when the worker was started with
``PYTHONTRACEMALLOC=1`` (Python's own allocation tracing: the lines of code holding the most
memory now). Reading only: nothing here changes what is committed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def consumer_positions(app: Any) -> list[str]:
    """One line per assigned partition: committed, acked (count, first, last), gaps, high water,
    and how many delivered messages wait for their acknowledgement."""
    consumer = app.consumer
    client = getattr(consumer._thread, "_consumer", None)   # aiokafka's, inside Faust's consumer thread
    paused = sorted(client._subscription.paused_partitions()) if client is not None else []
    buffered = sorted(client._fetcher._records) if client is not None and client._fetcher is not None else []
    lines = [f"unacked messages: {len(getattr(consumer, '_unacked_messages', ()))}",
             f"flow active {consumer.flow_active}; paused here {sorted(consumer._paused_partitions)}; "
             f"active {sorted(consumer._active_partitions or ())}; paused in the client {paused}; "
             f"fetched, not taken {buffered}"]
    for tp in sorted(consumer.assignment()):
        acked = sorted(consumer._acked.get(tp, ()))
        gaps = [(i.begin, i.end) for i in sorted(consumer._gap.get(tp, ()))]
        lines.append(f"{tp.topic}[{tp.partition}]: committed {consumer._committed_offset.get(tp)} "
                     f"acked {len(acked)} {acked[:3]}..{acked[-3:]} gaps {gaps[:5]} "
                     f"read {consumer._read_offset.get(tp)} fetch at {_fetch_position(client, tp)} "
                     f"high {consumer.highwater(tp)}")
    return lines


def _fetch_position(client: Any, tp: Any) -> int | None:
    """The client's next fetch offset of ``tp`` (None: no valid position, or not assigned)."""
    subscription = client._subscription.subscription if client is not None else None
    if subscription is None or subscription.assignment is None or tp not in subscription.assignment.tps:
        return None
    state = subscription.assignment.state_value(tp)
    return state.position if state.has_valid_position else None


def heap_lines(limit: int = 25) -> list[str]:
    """The ``limit`` lines of code that allocated the most memory still held, with the total;
    empty unless tracemalloc is tracing (``PYTHONTRACEMALLOC=1``)."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot()
    stats = snapshot.statistics("lineno")
    total = sum(stat.size for stat in stats)
    return [f"traced {total / 2**20:,.1f} MiB in {len(stats):,} lines of code"] + [
        f"{stat.size / 2**20:8.1f} MiB {stat.count:>10,} blocks  {stat.traceback[0]}" for stat in stats[:limit]]


def log_consumer_positions(app: Any) -> None:
    for line in consumer_positions(app):
        log.warning("consumer position: %s", line)
    for line in heap_lines():
        log.warning("heap: %s", line)
