"""The Faust worker: validate events, dead-letter bad ones, write good ones to the warehouse.

Delivery: at-least-once. A batch's offsets are acknowledged (and so committed) only after
the warehouse acknowledged its rows and its dead letters reached the dead-letter topic.
If the worker dies or is stopped mid-batch, the batch is not acknowledged and is delivered
again after restart; records already stored are skipped by the partition's high-water offset
and repeated event ids are marked so that aggregates count them once (``streams.ledger``).
While the warehouse is unavailable the agent retries the same batch with backoff and
consumes nothing more: back-pressure, bounded memory, no crash loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import faust
from faust.types import TP, EventT

from producers.kafka import BrokerUnavailable, partition_lags, read_range
from schemas.dead_letter import DeadLetter
from sinks.clickhouse import InsertAbandoned, Warehouse, batch_token, batch_token_of_texts
from sinks.rows import dead_letter_columns, event_columns, event_keys
from streams.batch import GROUP_MAX_BYTES, RawRecord, record_groups, split_batch
from streams.commands import CommandStore
from streams.config import WorkerConfig
from streams.continuity import HOLE_READ_SECONDS, Continuity, Hole
from streams.delivery import (
    FaultDrops,
    PartitionEnds,
    die,
    guarded,
    hold_back,
    mark_done,
    not_known_done,
    owned_by_this_worker,
    read_again,
    send_dead_letters,
    send_packets,
    write_with_retry,
)
from streams.detector_host import DetectorHost
from streams.faust_patches import FETCH_MAX_WAIT_MS, shorten_fetch_wait, stop_flow_until_streams_are_sought
from streams.figures import (
    DEAD_LETTER_BATCH_METRIC,
    MAX_BUFFERED_FIGURES,
    BatchTally,
    WorkerStats,
    batch_figures,
    live_latencies_ms,
    rss_bytes,
)
from streams.lane import InsertLane
from streams.ledger import PartitionLedger, annotate_group
from streams.signals import RunSignal, packets
from streams.take import TakenBatch, take_until_idle

log = logging.getLogger(__name__)
SKIPPED = "events partition %d: offsets %d..%d were skipped by the consumer; reading them from the topic"

STREAM_BUFFER_RECORDS = 1024
"""Most records a topic's stream buffer holds; Faust stops fetching its partitions beyond ~80 % of it.
Faust's default, 4,096, is up to 1 GiB of read-ahead with the emitter's records of up to 256 KiB
(the full bench's worker was at 1.3 GiB RSS after its max-rate run of a million events)."""


def faust_broker_url(brokers: str) -> str:
    return ";".join(f"kafka://{b.strip()}" for b in brokers.split(",") if b.strip())


def _records(events: Sequence[EventT]) -> list[RawRecord]:
    return [RawRecord(m.key, m.value, m.topic, m.partition, m.offset) for m in (e.message for e in events)]


class IngestWorker:
    """The worker's state and its steps: ``stats``, one ledger per owned partition of the events
    topic, the stream alerts, the warehouse both agents write to, and the Faust ``app`` whose
    agents and timer call the steps below."""

    def __init__(self, config: WorkerConfig, brokers: str, warehouse: Warehouse,
                 stats: WorkerStats | None = None):
        self.config = config
        self.brokers = brokers
        self.warehouse = warehouse
        self.stats = stats or WorkerStats()
        self.ledgers: dict[int, PartitionLedger] = {}
        self.sending = asyncio.Lock()     # a batch's signals and a status broadcast never interleave
        self.signaled_to: dict[int, int] = {}   # events partition -> newest offset whose signals were sent
        self.continuity = Continuity()   # holes the consumer left in the owned events partitions
        self.lane = InsertLane()          # one insert in flight while the next group is prepared
        self.partition_ends = PartitionEnds()   # where they end, asked of the broker
        self.fault_drops = FaultDrops(config.fault_drop_batch_every)   # a test hook, off unless set
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        # per-batch figures (time, metric, value) waiting for the next metrics sample (``record_metrics``)
        self.batch_rows: list[tuple[datetime, str, float]] = []
        shorten_fetch_wait(FETCH_MAX_WAIT_MS)
        stop_flow_until_streams_are_sought()
        self.app = app = faust.App(
            config.consumer_group,
            broker=faust_broker_url(brokers),
            store="memory://",
            datadir=str(config.data_dir / "faust"),
            key_serializer="raw",
            value_serializer="raw",
            topic_partitions=config.partitions,
            topic_replication_factor=config.replication_factor,
            broker_session_timeout=6.0,
            broker_heartbeat_interval=1.0,
            broker_commit_interval=1.0,
            consumer_auto_offset_reset="earliest",
            # the check compares a standby's read position with the changelog's high water, which a
            # rebalance right after a worker's death can leave behind it (faust-streaming issue 158):
            # it crashed the worker. Nothing relies on it: a snapshot carries the detector offset it
            # holds, and a restore replays the detector topic after it (``detectors_of``).
            recovery_consistency_check=False,
            producer_acks=-1,
            stream_buffer_maxsize=STREAM_BUFFER_RECORDS,
            web_enabled=False,
            broker_client_id=f"runlens-worker-{os.getpid()}",   # `runlens status` finds the process by it
        )
        # for tests and tools holding only the app: Faust's App has no slot for them
        app.runlens_stats = self.stats  # type: ignore[attr-defined]  # see above
        self.events_topic = app.topic(config.events_topic, key_type=bytes, value_type=bytes)
        self.dlq_topic = app.topic(config.dead_letter_topic, key_type=bytes, value_type=bytes)
        self.alerts_topic = app.topic(config.alerts_topic, key_type=bytes, value_type=bytes)
        self.detector_topic = app.topic(config.detector_topic, key_type=bytes, value_type=bytes,
                                        partitions=config.partitions)
        # one snapshot per detector partition, kept in that partition of the table's changelog topic
        # keys are str (serialized as JSON: raw bytes keys break recovery), values the raw snapshot bytes
        self.detector_state = app.Table("detector-state", key_type=str, value_type=bytes,
                                        partitions=config.partitions)
        self.detectors = DetectorHost(app, config, brokers, warehouse, self.stats, self.detector_state,
                                      self.alerts_topic)
        self.commands_topic = app.topic(config.commands_topic, key_type=bytes, value_type=bytes)
        self.outcomes_topic = app.topic(config.command_outcomes_topic, key_type=bytes, value_type=bytes)

        async def write_table(table: str, columns: dict[str, list[Any]], token: str, what: str) -> None:
            await write_with_retry(lambda: warehouse.insert_columns(table, columns, token), self.stats, what)

        self.commands = CommandStore(write_table, lambda letters: send_dead_letters(self.dlq_topic, letters))
        self._wire(app)

    def _wire(self, app: faust.App) -> None:
        """Connect the steps to ``app``. Faust calls agents with the stream and timers with no
        argument (it inspects the function it is given), so each is a plain function here."""
        config = self.config
        max_batch, within, idle = config.batch_max_records, config.batch_max_seconds, config.batch_idle_seconds

        # mode types its handlers with mypy_extensions' VarArg/NamedArg, which no function matches
        # under mypy 2 (even one of exactly that shape): the ignore is for that, not for this handler
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # see above
        async def forget_revoked(sender: Any, revoked: set[TP], **_: Any) -> None:
            self.forget_revoked(revoked)

        @app.agent(self.events_topic, name="ingest-events")
        async def ingest_events(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)   # the take works on the Stream implementation
            try:
                async for events in take_until_idle(stream, max_batch, within, idle):
                    if not self.fault_drops.drops(events):
                        await guarded(self.process_batch, events)
            finally:   # stopping: the insert in flight ends, its batch is held back
                self.lane.cancel()

        @app.agent(self.dlq_topic, name="store-dead-letters")
        async def store_dead_letters(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)
            async for events in take_until_idle(stream, max_batch, within, idle):
                await guarded(self.store_dead_letters, events)

        # replay/stop commands and their outcomes (streams.commands): rare records, small batches
        @app.agent(self.commands_topic, name="store-commands")
        async def store_commands(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)
            async for events in stream.take_events(100, within=0.2):
                await guarded(self.commands.store_commands, events)

        @app.agent(self.outcomes_topic, name="store-command-outcomes")
        async def store_command_outcomes(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)
            async for events in stream.take_events(100, within=0.2):
                await guarded(self.commands.store_outcomes, events)

        @app.timer(self.config.metrics_interval_seconds)
        async def record_metrics() -> None:
            await self.record_metrics()

        @app.agent(self.detector_topic, name="detect")
        async def detect(stream: faust.StreamT[bytes]) -> None:
            assert isinstance(stream, faust.Stream)
            async for event in stream.events():
                if self.fault_drops.drops([event]):
                    continue
                try:
                    await self.detectors.detect(event)
                except asyncio.CancelledError:
                    raise
                except BaseException as exc:
                    die(exc)

        @app.timer(min(5.0, max(1.0, config.alert_idle_seconds / 6)))
        async def judge_quiet_accounts() -> None:
            try:
                await self.fill_stalled()
                await self.broadcast_status()
                await self.detectors.judge_quiet_accounts()
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                die(exc)

    def forget_revoked(self, revoked: set[TP]) -> None:
        """Another worker may own these partitions next; reload from the warehouse (a ledger) or
        the detector-state table (detectors) if they return."""
        for tp in revoked:
            if tp.topic == self.config.events_topic:
                self.ledgers.pop(tp.partition, None)
                self.signaled_to.pop(tp.partition, None)
                self.continuity.forget(tp.partition)
            elif tp.topic == self.config.detector_topic:
                self.detectors.detection.pop(tp.partition, None)

    async def ledger_for(self, partition: int) -> PartitionLedger:
        if partition not in self.ledgers:
            loaded: list[PartitionLedger] = []
            await write_with_retry(
                lambda: loaded.append(PartitionLedger.from_state(self.warehouse.load_ledger(partition))),
                self.stats, f"state of partition {partition}")
            self.ledgers[partition] = loaded[0]
        return self.ledgers[partition]

    async def process_batch(self, events: Sequence[EventT]) -> None:
        """Records in groups of at most ``insert_max_rows`` events, in (partition, offset) order:
        memory stays bounded by the group, not the batch, and a crash between two groups leaves
        each partition's stored events a prefix, so the high-water position stays exact. Records the
        consumer skipped before or between them are read from the topic first (``streams.continuity``).
        A batch of ``take_until_idle`` is acknowledged once its last insert finished, in the
        background (``streams.lane``): the next batch is taken and prepared meanwhile."""
        acknowledge = events.defer_acks() if isinstance(events, TakenBatch) else None
        await self.process_raw(_records(events), owned=owned_by_this_worker(self.app, events),
                               acknowledge=acknowledge, give_up=partial(hold_back, events))

    async def process_raw(self, records: list[RawRecord], done: tuple[int, Hole] | None = None, *,
                          owned: Callable[[], bool], acknowledge: Callable[[], Awaitable[None]] | None = None,
                          give_up: Callable[[], None] = lambda: None) -> None:
        """``process_batch`` on records of the events topic; ``done``: a hole they were read from, every
        offset of which counts as handled afterwards (the log may not hold all of them); ``owned``:
        whether they may still be stored (``owned_by_this_worker``); ``acknowledge``: awaited after
        their last insert (without it every insert finished when this returns); ``give_up``: called
        when one of their inserts is given up."""
        stats = self.stats
        started = time.perf_counter()
        records = sorted(records, key=lambda r: (r.partition, r.offset))
        async with self.sending:
            prepared_in = self.lane.generation   # what the ledgers hold from here on is this batch's basis
            received = datetime.now(UTC)   # the clock event times are judged against, once per batch
            tally = BatchTally(records=len(records))
            for partition, hole in await self.holes_in(records):   # each ends before a record delivered here
                beyond = min(r.offset for r in records if r.partition == partition and r.offset >= hole[1])
                await self.fill_hole(partition, hole, beyond, received, tally, owned, prepared_in)
            stats.events_in += len(records)
            await self.store_records(records, received, tally, owned, prepared_in, give_up)
            if acknowledge is None:
                await self.lane.wait(prepared_in)
            now = time.monotonic()
            for record in records:   # in (partition, offset) order: the last one of each partition wins
                self.continuity.handled(record.partition, record.offset, now)
            if done is not None:   # (partition, (start, end))
                self.continuity.handled(done[0], done[1][1] - 1, now)
                mark_done(self.app, self.config.events_topic, done[0], *done[1])
            finish = partial(self.finish_batch, tally, started, acknowledge)
            if acknowledge is not None:
                self.lane.then(finish, prepared_in, give_up)
                return
        await finish()

    async def finish_batch(self, tally: BatchTally, started: float,
                           acknowledge: Callable[[], Awaitable[None]] | None) -> None:
        if acknowledge is not None:
            await acknowledge()
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        self.keep_batch_figures(tally, time.perf_counter() - started, self.stats.last_batch_at)

    async def store_records(self, records: list[RawRecord], received: datetime, tally: BatchTally,
                            owned: Callable[[], bool], prepared_in: int, give_up: Callable[[], None]) -> None:
        for group in record_groups(records, self.config.insert_max_rows, GROUP_MAX_BYTES):
            await self.process_records(group, received, tally, owned, prepared_in, give_up)

    async def holes_in(self, records: list[RawRecord]) -> list[tuple[int, Hole]]:
        """What the consumer skipped before or between ``records`` (in (partition, offset) order);
        a partition new to this worker is compared with its committed offset, or with the start of
        its log when the group never committed one."""
        consumer, topic, now = self.app.consumer, self.config.events_topic, time.monotonic()
        offsets: dict[int, list[int]] = {}
        for record in records:
            offsets.setdefault(record.partition, []).append(record.offset)
        new = [TP(topic, p) for p in offsets if p not in self.continuity.next_offset]
        starts: dict[TP, int | None] = {tp: consumer._committed_offset.get(tp) for tp in new}  # type: ignore[attr-defined]  # Faust keeps it there
        if never := [tp for tp, committed in starts.items() if committed is None]:
            starts.update(await consumer.earliest_offsets(*never))
        for tp, start in starts.items():
            self.continuity.start(tp.partition, start, now)
        holes: list[tuple[int, Hole]] = []
        for partition, seen in offsets.items():
            for start, end in self.continuity.holes(partition, seen):
                holes += [(partition, part) for part in not_known_done(self.app, topic, partition, start, end)]
        return holes

    async def fill_hole(self, partition: int, hole: Hole, beyond: int, received: datetime, tally: BatchTally,
                        owned: Callable[[], bool], prepared_in: int) -> None:
        """Read a hole from the topic in pieces of at most ``batch_max_records`` records, store each
        and acknowledge its offsets: memory and redelivery after a crash stay bounded as for a batch.
        ``beyond``: a delivered offset after it (``read_again``: whether the log holds the hole)."""
        start, end = hole
        log.warning(SKIPPED, partition, start, end - 1)
        for first in range(start, end, self.config.batch_max_records):
            last = min(end, first + self.config.batch_max_records)
            piece = await self.read_hole(partition, first, last, beyond)
            self.stats.events_in += len(piece)
            tally.records += len(piece)
            await self.store_records(piece, received, tally, owned, prepared_in, lambda: None)
            await self.lane.wait(prepared_in)
            self.continuity.handled(partition, last - 1, time.monotonic())
            mark_done(self.app, self.config.events_topic, partition, first, last)

    async def read_hole(self, partition: int, start: int, end: int, beyond: int | None = None) -> list[RawRecord]:
        """Offsets ``start`` .. ``end - 1`` of an events partition, read once, or as ``read_again`` does."""
        topic = self.config.events_topic
        if beyond is not None:
            found = await read_again(self.brokers, topic, partition, start, end, beyond, self.stats)
        else:
            found = await asyncio.get_running_loop().run_in_executor(
                None, partial(read_range, self.brokers, topic, partition, start, end, timeout=HOLE_READ_SECONDS))
        self.stats.offsets_refetched += end - start
        return [RawRecord(r.key, r.value, topic, partition, r.offset) for r in found]

    async def fill_stalled(self) -> None:
        """Every few seconds: events partitions the consumer read beyond what was handled while none
        of their records is in flight (delivered, not acknowledged: a batch held back is marked acked)
        are read from the topic (``Continuity.stalled``), but for what the log does not hold."""
        consumer, topic = self.app.consumer, self.config.events_topic
        in_flight = {m.tp.partition for m in list(consumer._unacked_messages) if m.tp.topic == topic and not m.acked}  # type: ignore[attr-defined]  # Faust keeps it there
        read_to = {tp.partition: consumer._read_offset.get(tp) for tp in consumer.assignment() if tp.topic == topic}  # type: ignore[attr-defined]  # Faust keeps it there
        for partition, (start, end) in self.continuity.stalled(read_to, in_flight, time.monotonic()):
            if not (parts := not_known_done(self.app, topic, partition, start, end)):   # not in the log
                self.continuity.handled(partition, end - 1, time.monotonic())
                continue
            self.continuity.moved_at[partition] = time.monotonic()   # tried: the next try after STALL_SECONDS
            start, end = parts[0][0], parts[-1][1]
            log.warning(SKIPPED, partition, start, end - 1)
            try:   # outside the batch lock: a slow broker does not hold the batches up meanwhile
                found = await self.read_hole(partition, start, end)
            except BrokerUnavailable as exc:
                log.warning("could not read the skipped records yet: %s", exc)
                continue
            if self.continuity.next_offset.get(partition) == start:   # not delivered nor revoked meanwhile
                try:
                    await self.process_raw(found, done=(partition, (start, end)), owned=owned_by_this_worker(self.app))
                except InsertAbandoned as exc:   # read again at the next check, by whichever worker owns it
                    log.warning("skipped records of partition %d not stored: %s", partition, exc)

    def keep_batch_figures(self, tally: BatchTally, wall_s: float, at: float) -> None:
        """Buffer one batch's ``BATCH_METRICS`` rows for the next metrics sample (one insert for
        all batches since the last one, off the batch path)."""
        when = datetime.fromtimestamp(at, UTC)
        self.keep_rows([(when, metric, value) for metric, value in batch_figures(tally, wall_s).items()])

    def keep_rows(self, figures: list[tuple[datetime, str, float]]) -> None:
        rows = self.batch_rows
        rows.extend(figures)
        if len(rows) > MAX_BUFFERED_FIGURES:
            del rows[:len(rows) - MAX_BUFFERED_FIGURES]

    async def process_records(self, records: list[RawRecord], received: datetime, tally: BatchTally,
                              owned: Callable[[], bool], prepared_in: int, give_up: Callable[[], None]) -> None:
        """Validate, dead-letter and annotate one group and hand its insert to the lane (``prepared_in``:
        the lane's generation when its batch began; ``give_up``: the batch's, if the insert is given
        up); adds what it did to ``tally`` (the batch's figures).
        A line's content cannot make this raise: ``split_batch`` turns every problem of a line
        (decoding, validation, column mapping) into its dead letter before the ledger sees it."""
        stats, warehouse = self.stats, self.warehouse
        split = split_batch(records, max_event_bytes=self.config.max_event_bytes, now=received,
                            max_clock_skew_seconds=self.config.max_clock_skew_seconds)
        if split.dead_letters:
            await send_dead_letters(self.dlq_topic, split.dead_letters)
            stats.dead_lettered += len(split.dead_letters)
        ledgers = {partition: await self.ledger_for(partition) for partition in {e.partition for e in split.events}}
        kept, notes, signals, duplicates = annotate_group(split.events, ledgers)
        redelivered = len(split.events) - len(kept)
        stats.skipped_redelivered += redelivered
        stats.duplicates += duplicates
        tally.dead_letters += len(split.dead_letters)
        tally.redelivered += redelivered
        tally.duplicates += duplicates
        if not kept:
            self.handled(records)
            return
        # the detectors' signals reach their topic before the events are stored: a batch redelivered
        # after a crash skips stored events, and a signal sent twice is applied once
        await self.send_signals(signals, records)
        columns = event_columns(kept, notes)
        # positions and ids: a retry repeats the token, a re-created topic's reused positions do not
        token = batch_token_of_texts("events", event_keys(kept))

        async def write() -> None:
            await write_with_retry(lambda: warehouse.insert_columns("events", columns, token, proceed=owned),
                                   stats, f"{len(kept)} events", proceed=owned)
            stats.events_written += len(kept)
            tally.stored += len(kept)
            tally.latencies_ms += live_latencies_ms(columns["ts"], time.time())

        def forget() -> None:   # the ledgers count the group as stored: read them again if they return
            for partition, ledger in ledgers.items():
                if self.ledgers.get(partition) is ledger:
                    del self.ledgers[partition]
            give_up()

        try:
            await self.lane.insert(write, prepared_in, forget)
        except InsertAbandoned:
            forget()
            raise

    async def send_signals(self, signals: list[RunSignal], records: list[RawRecord]) -> None:
        """One packet to every detector partition: its accounts' ``signals`` (those of ``records``)
        and where the events partitions this worker owns stand; waits for the broker's
        acknowledgement of every one."""
        self.handled(records)
        await send_packets(self.detector_topic, packets(signals, await self.partition_status(), self.config.partitions))

    def handled(self, records: list[RawRecord]) -> None:
        """``records`` (in (partition, offset) order) hold nothing more for the detectors."""
        for record in records:
            self.signaled_to[record.partition] = record.offset

    async def partition_status(self) -> dict[int, bool]:
        """``{partition: lagging}`` for the events partitions this worker owns (``PartitionEnds``):
        beyond the newest offset handled, or the committed one before the first batch since assignment."""
        consumer = self.app.consumer
        owned = [tp for tp in consumer.assignment() if tp.topic == self.config.events_topic]
        done = {tp: self.signaled_to.get(tp.partition, consumer._committed_offset.get(tp)) for tp in owned}  # type: ignore[attr-defined]  # Faust keeps it there
        return await self.partition_ends.lagging(consumer, done)

    async def broadcast_status(self) -> None:
        """Every few seconds, also when nothing arrives: where the owned events partitions stand,
        to every detector partition (how the detectors learn that input went quiet)."""
        async with self.sending:
            status = await self.partition_status()
            if status:
                await send_packets(self.detector_topic, packets([], status, self.config.partitions))

    async def record_metrics(self) -> None:
        """Pipeline health every few seconds into ``pipeline_metrics``: the worker's counters, the
        group's lag, one ``partition_lag`` row per events partition this worker owns, and the
        figures of every batch handled since the last sample (``BATCH_METRICS``,
        ``DEAD_LETTER_BATCH_METRIC``), in one insert.
        Best effort: a failed write is logged and skipped, never retried, never blocks ingestion;
        only the batch figures are kept for the next sample (bounded), the panels sum them."""
        config, worker_name = self.config, self.worker_name
        loop = asyncio.get_running_loop()
        try:
            lags = await loop.run_in_executor(None, lambda: partition_lags(
                self.brokers, config.consumer_group, [config.events_topic, config.dead_letter_topic]))
            lag = float(sum(lags.values()))
        except Exception:  # noqa: BLE001 - the broker may be briefly unreachable
            lags, lag = {}, -1.0
        owned = sorted(tp.partition for tp in self.app.consumer.assignment() if tp.topic == config.events_topic)
        now = datetime.now(UTC)
        figures = {**{k: float(v) for k, v in self.stats.as_dict().items()}, "consumer_lag": lag,
                   "too_late_for_alerts": float(sum(d.too_late for d in self.detectors.detection.values())),
                   "rss_bytes": float(rss_bytes())}
        metrics = list(figures) + ["partition_lag"] * len(owned)
        batch_rows, self.batch_rows = self.batch_rows, []
        columns: dict[str, list[Any]] = {
            "time": [now] * len(metrics) + [r[0] for r in batch_rows],
            "worker": [worker_name] * (len(metrics) + len(batch_rows)),
            "metric": metrics + [r[1] for r in batch_rows],
            "partition": [-1] * len(figures) + owned + [-1] * len(batch_rows),
            "value": list(figures.values()) + [float(lags.get((config.events_topic, p), -1)) for p in owned]
                     + [r[2] for r in batch_rows]}
        try:
            await loop.run_in_executor(None, lambda: self.warehouse.insert_columns(
                "pipeline_metrics", columns, f"metrics-{worker_name}-{now.timestamp()}"))
        except Exception as exc:  # noqa: BLE001
            log.info("skipped a metrics sample: %s", exc)
            self.batch_rows[:0] = batch_rows[-MAX_BUFFERED_FIGURES:]   # batches handled meanwhile stay after

    async def store_dead_letters(self, events: Sequence[EventT]) -> None:
        """Store one batch of the dead-letter topic. ``from_record`` and ``dead_letter_columns``
        never raise on content: a record of the dead-letter topic that runlens did not write is
        stored with defaults, not fatal."""
        items = [(DeadLetter.from_record(e.message.value, e.message.key, e.message.headers),
                  e.message.partition, e.message.offset) for e in events]
        columns = dead_letter_columns(items, datetime.now(UTC))
        token = batch_token("dead_letters", [(p, o) for _, p, o in items])
        await write_with_retry(lambda: self.warehouse.insert_columns("dead_letters", columns, token),
                               self.stats, f"{len(items)} dead letters")
        self.keep_rows([(datetime.now(UTC), DEAD_LETTER_BATCH_METRIC, float(len(items)))])


def create_app(config: WorkerConfig, brokers: str, warehouse: Warehouse,
               stats: WorkerStats | None = None) -> faust.App:
    """Build the worker app for ``config``; ``warehouse`` is the sink both agents write to."""
    return IngestWorker(config, brokers, warehouse, stats).app


