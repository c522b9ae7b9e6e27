"""What the detectors need of the events, re-keyed by account onto a topic of their own.

The ingest agent reads the events topic, partitioned by run; the detectors judge accounts and
workflows, so with several workers each would see a share of every workflow's runs. The ingest
agent therefore sends, for every batch, one *packet* to each partition of the detector topic:
the run signals (queued, started, finished: account, workflow, run, times, failed, workflow version,
error code and class) of the
accounts that partition owns (``route``: CRC32 of the account id), each with its position in the
events topic (partition, offset, line), and the status of every events partition the worker
owns (``lagging`` or read to its end). A detector partition thus holds every run signal of its
accounts, in the order each events partition was read, and learns where every events
partition stands, whichever worker reads it.

Packets are compact JSON arrays (``pack`` / ``unpack``). ``unpack`` checks the shape and the types
of what it reads (as ``pack`` writes them, no coercion) and raises ``BadPacket`` on anything else:
the topic is internal, but a record that is not a packet must not stop detection.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import msgspec
import orjson

from schemas.events import Event
from schemas.fast import FastEvent
from streams.detectors.alert import _dt, _ms

QUEUED, STARTED, FINISHED = "q", "s", "f"
_KINDS = {"run.queued": QUEUED, "run.started": STARTED, "run.finished": FINISHED}
SIGNAL_TYPES = frozenset(_KINDS)
"""The event types that have a signal (``signal_of`` returns None for every other type)."""


class RunSignal(NamedTuple):
    """One run lifecycle event as the detectors see it, with its position in the events topic."""

    partition: int
    offset: int
    line: int
    kind: str                      # QUEUED, STARTED or FINISHED
    account_id: str
    workflow_id: str
    workflow_name: str
    run_id: str
    ts: datetime
    started_at: datetime | None    # FINISHED only
    failed: bool                   # FINISHED only: status failed
    workflow_version: int = 0
    error_code: str = ""           # FINISHED and failed only
    error_class: str = ""          # FINISHED and failed only


class Packet(NamedTuple):
    signals: list[RunSignal]
    lagging: dict[int, bool]       # events partition -> records not read yet (the sender's partitions)


class BadPacket(ValueError):
    """A record of the detector topic that is not a packet."""


def signal_of(event: Event | FastEvent, partition: int, offset: int, line: int) -> RunSignal | None:
    """The event's signal, or None for events the detectors do not read (steps)."""
    kind = _KINDS.get(event.type)
    if kind is None:
        return None
    started = failed = None
    code = error_class = ""
    if event.type == "run.finished":
        started, failed = event.started_at, event.status.value == "failed"
        error = event.error
        if failed and error is not None:
            code, error_class = error.code, error.class_.value
    return RunSignal(partition, offset, line, kind, event.account_id, event.workflow_id,
                     getattr(event, "workflow_name", "") or "", event.run_id, event.ts, started, bool(failed),
                     int(getattr(event, "workflow_version", 0) or 0), code, error_class)


def route(account_id: str, partitions: int) -> int:
    """The detector partition that owns ``account_id``."""
    return zlib.crc32(account_id.encode()) % partitions


def pack(signals: Iterable[RunSignal], lagging: dict[int, bool]) -> bytes:
    rows = [[s.partition, s.offset, s.line, s.kind, s.account_id, s.workflow_id, s.workflow_name, s.run_id,
             _ms(s.ts, "ts"), None if s.started_at is None else _ms(s.started_at, "started_at"), int(s.failed),
             *((s.workflow_version, s.error_code, s.error_class) if s.error_code or s.workflow_version else ())]
            for s in signals]
    return orjson.dumps([1, rows, [[p, int(lag)] for p, lag in sorted(lagging.items())]])


MAX_PACKET_SIGNALS = 2_000
"""Most signals in one packet (~180 bytes each typically)."""

MAX_PACKET_BYTES = 900_000
"""Most bytes of signal text in one packet (a signal packs to at most ~2.3 KiB with names and
its error code at their 512-character bound), so that a packet stays within the producer's
1 MB request size whatever the names."""


def _size(s: RunSignal) -> int:
    """An upper bound of a signal's packed bytes (JSON escaping at most doubles a character
    below the 6-byte escapes, which names of control characters would need)."""
    return 120 + 6 * (len(s.account_id) + len(s.workflow_id) + len(s.workflow_name) + len(s.run_id)
                      + len(s.error_code) + len(s.error_class))


def _chunks(mine: list[RunSignal]) -> list[list[RunSignal]]:
    out: list[list[RunSignal]] = [[]]
    size = 0
    for s in mine:
        n = _size(s)
        if out[-1] and (len(out[-1]) >= MAX_PACKET_SIGNALS or size + n > MAX_PACKET_BYTES):
            out.append([])
            size = 0
        out[-1].append(s)
        size += n
    return out


def packets(signals: Sequence[RunSignal], lagging: dict[int, bool], partitions: int) -> list[tuple[int, bytes]]:
    """``(detector partition, packet)`` pairs: every partition gets at least one (every one learns
    the partitions' status), and its accounts' signals in order, ``MAX_PACKET_SIGNALS`` and
    ``MAX_PACKET_BYTES`` at most each."""
    routed: list[list[RunSignal]] = [[] for _ in range(partitions)]
    routes: dict[str, int] = {}   # an account's partition, computed once per call
    for s in signals:
        q = routes.get(s.account_id)
        if q is None:
            q = routes[s.account_id] = route(s.account_id, partitions)
        routed[q].append(s)
    return [(q, pack(chunk, lagging)) for q, mine in enumerate(routed) for chunk in _chunks(mine)]


class _Row(msgspec.Struct, array_like=True, frozen=True, gc=False, forbid_unknown_fields=True):
    """A packed signal as ``pack`` writes it: ``RunSignal``'s fields with times in epoch
    milliseconds, the last three left out when all are empty (so older packets and compact ones
    read alike; a row of 12 or 13 fields reads as if the ones it lacks were empty). More than 14
    fields, or a field of another type, is not a packet."""

    partition: int
    offset: int
    line: int
    kind: str
    account_id: str
    workflow_id: str
    workflow_name: str
    run_id: str
    ts: int
    started_at: int | None
    failed: int
    workflow_version: int = 0
    error_code: str = ""
    error_class: str = ""


_PACKET = msgspec.json.Decoder(tuple[int, list[_Row], list[tuple[int, int]]])
"""A packet: its version, its signals' rows and its partition status, typed as ``pack`` writes them
(decoded and checked in one pass, no Python list per row)."""


def _signal(row: _Row) -> RunSignal:
    started = None if row.started_at is None else _dt(row.started_at)
    return RunSignal(row.partition, row.offset, row.line, row.kind, row.account_id, row.workflow_id,
                     row.workflow_name, row.run_id, _dt(row.ts), started, bool(row.failed), row.workflow_version,
                     row.error_code, row.error_class)


def unpack(raw: bytes | None) -> Packet:
    try:
        version, rows, status = _PACKET.decode(raw or b"")
        if version != 1:
            raise BadPacket(f"unknown packet version {version!r}")
        signals = [_signal(row) for row in rows]
        lagging = {p: bool(lag) for p, lag in status}
    except BadPacket:
        raise
    except (msgspec.DecodeError, ValueError, TypeError, OverflowError) as exc:   # a wrong shape or type: DecodeError
        raise BadPacket(f"not a detector packet: {type(exc).__name__}") from None
    if any(s.kind not in (QUEUED, STARTED, FINISHED) for s in signals):
        raise BadPacket("unknown signal kind")
    return Packet(signals, lagging)
