"""The detectors of one detector partition (``streams.detection``) and the packets that feed them
(``streams.signals``): per-account watermarks, every signal applied once, and a snapshot that
goes on exactly where the detectors were and refuses to unpickle anything else."""

from __future__ import annotations

import os
import pickle
import zlib
from datetime import UTC, datetime, timedelta

import pytest

from streams.detection import PartitionDetectors
from streams.signals import (
    FINISHED,
    MAX_PACKET_SIGNALS,
    STARTED,
    BadPacket,
    Packet,
    RunSignal,
    pack,
    packets,
    route,
    unpack,
)

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
LATENESS = timedelta(minutes=2)


class Positions:
    """Hands out increasing (offset, line) positions per events partition."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}

    def __call__(self, partition: int) -> int:
        self.next[partition] = self.next.get(partition, -1) + 1
        return self.next[partition]


def started(pos: Positions, account: str, run: str, at: datetime, partition: int = 0) -> RunSignal:
    return RunSignal(partition, pos(partition), 0, STARTED, account, "wf", "WF", run, at, None, False)


def finished(pos: Positions, account: str, run: str, at: datetime, failed: bool, partition: int = 0) -> RunSignal:
    return RunSignal(partition, pos(partition), 0, FINISHED, account, "wf", "WF", run, at,
                     at - timedelta(seconds=20), failed)


def spiky(pos: Positions, account: str = "acme") -> list[list[RunSignal]]:
    """2 h of one workflow, 6 runs a minute, 2% failing, then 60% for the last 15 minutes; one
    packet per minute."""
    start, minutes = NOW - timedelta(hours=2), []
    for minute in range(120):
        batch = []
        for i in range(6):
            at = start + timedelta(minutes=minute, seconds=10 * i)
            n = minute * 6 + i
            failed = (n % 50 == 0) if at < NOW - timedelta(minutes=15) else (n % 5 < 3)
            batch += [started(pos, account, f"r{n}", at - timedelta(seconds=20), partition=n % 2),
                      finished(pos, account, f"r{n}", at, failed, partition=n % 2)]
        minutes.append(batch)
    return minutes


def run(detectors: PartitionDetectors, batches: list[list[RunSignal]]) -> list:
    raised = []
    for batch in batches:
        raised += detectors.apply(Packet(batch, {0: False, 1: False}), max(s.ts for s in batch))
    return raised


def test_a_future_dated_account_moves_only_its_own_watermark_and_only_to_the_wall_clock():
    pos = Positions()
    d = PartitionDetectors(LATENESS, now=lambda: NOW)
    d.apply(Packet([started(pos, "acme", "a1", NOW - timedelta(minutes=1)),
                    started(pos, "mallory", "m1", NOW + timedelta(days=2)),
                    started(pos, "mallory", "m2", datetime(9999, 12, 31, tzinfo=UTC))], {0: False}))
    assert d.watermarks.watermark("mallory") == NOW + timedelta(seconds=60) - LATENESS
    assert d.watermarks.watermark("acme") == NOW - timedelta(minutes=1) - LATENESS
    d.observe(started(pos, "acme", "a2", NOW - timedelta(minutes=2)))
    assert d.too_late == 0
    d.observe(started(pos, "acme", "a3", NOW - timedelta(minutes=4)))
    assert d.too_late == 1          # late against acme's own watermark
    assert [a for a in d.advance() if a.account_id == "acme"] == []   # acme's runs in flight are not stuck


def test_a_spike_fires_and_a_packet_sent_again_changes_nothing():
    pos = Positions()
    batches = spiky(pos)
    once = run(PartitionDetectors(LATENESS), batches)
    spikes = [a for a in once if a.kind == "failure_spike" and a.state == "firing"]
    assert {a.subject for a in spikes} == {"wf", "acme"}
    twice = PartitionDetectors(LATENESS)
    raised = []
    for batch in batches:   # every packet delivered twice, as after a redelivery
        for _ in range(2):
            raised += twice.apply(Packet(batch, {0: False, 1: False}), max(s.ts for s in batch))
    assert raised == once


def test_a_snapshot_goes_on_where_the_detectors_were():
    pos = Positions()
    batches = spiky(pos)
    whole = run(PartitionDetectors(LATENESS), batches)
    first = PartitionDetectors(LATENESS)
    raised = run(first, batches[:100])
    restored = PartitionDetectors.restore(first.snapshot())
    raised += run(restored, batches[95:])        # the last 5 packets before the snapshot come again
    assert raised == whole and [a for a in whole if a.kind == "failure_spike"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize("payload", [{"detectors": _Exploit()}, _Exploit(), ["not", "a", "snapshot"]])
def test_a_forged_snapshot_is_refused_without_running_anything(payload):
    blob = zlib.compress(pickle.dumps(payload))
    with pytest.raises(pickle.UnpicklingError):
        PartitionDetectors.restore(blob)


def test_packets_round_trip_and_route_each_account_to_one_partition():
    pos = Positions()
    signals = [started(pos, f"acct-{i}", f"r{i}", NOW) for i in range(20)]
    signals.append(finished(pos, "acct-1", "r1", NOW + timedelta(seconds=5), True, partition=3))
    values = packets(signals, {0: True, 3: False}, 4)
    assert [q for q, _ in values] == [0, 1, 2, 3]
    unpacked = [unpack(v) for _, v in values]
    assert sorted((s for p in unpacked for s in p.signals), key=lambda s: (s.partition, s.offset)) == \
        sorted(signals, key=lambda s: (s.partition, s.offset))
    for q, packet in enumerate(unpacked):
        assert packet.lagging == {0: True, 3: False}
        assert all(route(s.account_id, 4) == q for s in packet.signals)
    assert unpack(pack([], {})) == Packet([], {})
    many = [started(pos, "acct-1", f"m{i}", NOW) for i in range(MAX_PACKET_SIGNALS + 1)]
    split = [(q, unpack(v).signals) for q, v in packets(many, {}, 2)]
    mine = route("acct-1", 2)
    expected = [(mine, MAX_PACKET_SIGNALS), (mine, 1)]
    expected.insert(0 if mine == 1 else 2, (1 - mine, 0))
    assert [(q, len(got)) for q, got in split] == expected
    assert [s for q, got in split for s in got] == many


@pytest.mark.parametrize("raw", [None, b"", b"{}", b"[2, [], []]", b"[1, [[1, 2]], []]",
                                 b'[1, [[0, 0, 0, "x", "a", "w", "n", "r", 0, null, 0]], []]', b"\xff",
                                 b'[1, [[0, 0, 0, "q", "a", "w", "n", "r", 0, null, 0, 1, "c", "k", "x"]], []]',
                                 b'[1, [[0, 0, 0, "q", "a", "w", "n", "r", 0.5, null, 0]], []]',
                                 b'[1, [["0", 0, 0, "q", "a", "w", "n", "r", 0, null, 0]], []]'])
def test_a_record_that_is_not_a_packet_is_refused_with_one_error(raw):
    with pytest.raises(BadPacket):
        unpack(raw)


def test_a_partition_not_heard_of_holds_judgement_back_until_its_status_arrives():
    """Two workers: one reports its partitions read to their end while the other has not reported
    yet (or has died). Nothing says the silent partitions are read, so the account waits."""
    pos = Positions()
    d = PartitionDetectors(LATENESS, idle=timedelta(seconds=5), partitions=2)
    d.apply(Packet([started(pos, "acme", "a1", NOW - timedelta(minutes=10))], {0: False}), NOW)
    later = NOW + timedelta(minutes=1)
    assert d.advance(later, every_account=True) == [] and d.watermarks.watermark("acme") is None
    d.apply(Packet([], {0: False}), later)             # the first worker's status, every few seconds
    assert d.advance(later, every_account=True) == [] and d.watermarks.watermark("acme") is None
    d.apply(Packet([], {1: False}), later)             # partition 1's worker reports: read to its end
    d.advance(later, every_account=True)
    assert d.watermarks.watermark("acme") == later - timedelta(seconds=5) - LATENESS
    # its worker goes silent: after the idle timeout (shorter than STATUS_STALE here) the partition
    # counts as lagging again, before the idle rule could move the watermark past what piles up there
    assert d.held_back(later + timedelta(seconds=4)) == set()
    assert d.held_back(later + timedelta(seconds=6)) == {0, 1}
    slow = PartitionDetectors(LATENESS, idle=timedelta(minutes=5), partitions=1)
    slow.apply(Packet([], {0: False}), later)
    assert slow.held_back(later + timedelta(seconds=29)) == set()
    assert slow.held_back(later + timedelta(seconds=31)) == {0}, "never longer than STATUS_STALE"


def test_a_status_read_again_later_counts_from_when_it_was_sent():
    """After a restore (or a skipped packet) the worker reads old packets again: a status sent
    40 s ago by a worker that has died since must not make its partition look freshly read to its
    end, or the idle rule would move the watermark past the records piling up there."""
    d = PartitionDetectors(LATENESS, idle=timedelta(seconds=5), partitions=1)
    sent = NOW - timedelta(seconds=40)
    d.apply(Packet([], {0: False}), NOW, sent_at=sent)
    assert d.held_back(NOW) == {0}
    d.apply(Packet([], {0: False}), NOW, sent_at=NOW - timedelta(seconds=1))
    assert d.held_back(NOW) == set()
    d.apply(Packet([], {0: False}), NOW, sent_at=NOW + timedelta(seconds=3))   # a sender's clock ahead
    assert d.held_back(NOW + timedelta(seconds=4)) == set()
    assert d.held_back(NOW + timedelta(seconds=6)) == {0}
