"""Where the worker's consumer stands per partition, for a stuck partition's post-mortem.

``consumer_positions`` reads Faust's own bookkeeping (the committed offset, the acknowledged
offsets not committed yet, the gaps it fills, the high water) and logs it; ``runlens worker``
writes it to the log on SIGUSR2. Reading only: nothing here changes what is committed.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def consumer_positions(app: Any) -> list[str]:
    """One line per assigned partition: committed, acked (count, first, last), gaps, high water,
    and how many delivered messages wait for their acknowledgement."""
    consumer = app.consumer
    lines = [f"unacked messages: {len(getattr(consumer, '_unacked_messages', ()))}"]
    for tp in sorted(consumer.assignment()):
        acked = sorted(consumer._acked.get(tp, ()))
        gaps = [(i.begin, i.end) for i in sorted(consumer._gap.get(tp, ()))]
        lines.append(f"{tp.topic}[{tp.partition}]: committed {consumer._committed_offset.get(tp)} "
                     f"acked {len(acked)} {acked[:3]}..{acked[-3:]} gaps {gaps[:5]} "
                     f"read {consumer._read_offset.get(tp)} high {consumer.highwater(tp)}")
    return lines


def log_consumer_positions(app: Any) -> None:
    for line in consumer_positions(app):
        log.warning("consumer position: %s", line)
