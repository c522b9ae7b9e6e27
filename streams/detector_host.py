"""The detector partitions a worker owns: their detectors restored, fed and snapshotted, and
what they raise delivered.

Promises: a packet of the detector topic is applied once to its partition's detectors, in offset
order; a new owner of the partition (after a crash or a rebalance) restores the last snapshot
from the detector-state table and applies the packets after it again (``detectors_of``), and
packets the consumer skipped are read from the topic (``catch_up``); an alert reaches the alerts
topic and the ``alert_events`` table (deduplicated by its id and state) before its packet is
acknowledged, the webhook in the background.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import orjson
from faust.types import EventT

from sinks.clickhouse import Warehouse, batch_token
from streams.alerting import WebhookNotifier, alert_columns, alert_document
from streams.config import WorkerConfig
from streams.delivery import mark_done, not_known_done, read_again, write_with_retry
from streams.detection import FUTURE_TOLERANCE, PartitionDetectors
from streams.detectors import Alert, parse_deadlines
from streams.figures import WorkerStats
from streams.signals import BadPacket, unpack
from streams.snapshots import SNAPSHOT_SECONDS, read_snapshot, write_snapshot

log = logging.getLogger(__name__)


class DetectorHost:
    """The detectors of each detector partition this worker owns (``streams.detection``), restored
    from the detector-state table and the packets after the snapshot, and their alerts' delivery."""

    def __init__(self, app: faust.App, config: WorkerConfig, brokers: str, warehouse: Warehouse,
                 stats: WorkerStats, detector_state: Any, alerts_topic: faust.TopicT):
        self.app, self.config, self.brokers, self.warehouse, self.stats = app, config, brokers, warehouse, stats
        self.detector_state, self.alerts_topic = detector_state, alerts_topic
        self.detection: dict[int, PartitionDetectors] = {}
        self.snapshot_at: dict[int, float] = {}
        self.detecting = asyncio.Lock()   # one packet or sweep at a time
        self.webhook = WebhookNotifier(config.alert_webhook_url) if config.alert_webhook_url else None
        self.deadlines = parse_deadlines(config.alert_deadlines)   # a bad setting stops the worker at start

    async def detect(self, event: EventT) -> None:
        """One packet of the detector topic: apply it to its partition's detectors and deliver
        what they raise; every ``SNAPSHOT_SECONDS`` write the detectors to the detector-state
        table (with the offset of the last packet they hold). Packets are acknowledged as usual: a
        new owner of the partition (after a crash or a rebalance) restores the snapshot and
        applies the packets after it again (``detectors_of``); a packet at or below the last one
        applied is skipped, and packets the consumer skipped are read from the topic
        (``catch_up``)."""
        partition, offset = event.message.partition, event.message.offset
        async with self.detecting:
            detectors = await self.detectors_of(partition, offset)
            if offset <= detectors.applied_to:
                return
            if await self.catch_up(detectors, partition, offset, skipped=True):
                log.warning("detector partition %d: packets before offset %d were skipped by the consumer; read "
                            "them from the topic", partition, offset)
            await self.apply_packet(detectors, offset, event.message.value, event.message.timestamp)
            now = time.monotonic()
            # at most every SNAPSHOT_SECONDS, and never more than ~5 % of the time in taking them
            every = max(SNAPSHOT_SECONDS, 20 * self.stats.detector_snapshot_ms / 1000)
            if now - self.snapshot_at.get(partition, 0.0) >= every:
                blob = detectors.snapshot()
                write_snapshot(self.detector_state, partition, blob)
                self.snapshot_at[partition] = time.monotonic()
                self.stats.detector_snapshot_bytes = len(blob)
                self.stats.detector_snapshot_ms = round(1000 * (self.snapshot_at[partition] - now), 1)

    async def apply_packet(self, detectors: PartitionDetectors, offset: int, value: bytes | None,
                           sent_at: float | None) -> None:
        """One packet (``sent_at``: its record's time, epoch seconds) applied to ``detectors``."""
        try:
            packet = unpack(value)
        except BadPacket as exc:
            self.stats.bad_packets += 1
            log.warning("skipped record %d of the detector topic: %s", offset, exc)
        else:
            sent = datetime.fromtimestamp(sent_at, UTC) if sent_at else None
            raised = detectors.apply(packet, datetime.now(UTC), sent)
            if raised:
                await self.deliver_alerts(raised)
        detectors.applied_to = offset

    async def detectors_of(self, partition: int, offset: int) -> PartitionDetectors:
        """The detectors of ``partition``, whose next packet is at ``offset``: held here, or restored
        from the detector-state table and brought up to ``offset`` by the packets after the
        snapshot (read from the topic directly), or new when neither exists."""
        detectors = self.detection.get(partition)
        if detectors is not None:
            return detectors
        config = self.config
        blob = read_snapshot(self.detector_state, partition)
        if blob:
            detectors = PartitionDetectors.restore(blob)
        else:
            detectors = PartitionDetectors(
                timedelta(seconds=config.alert_lateness_seconds),
                future_tolerance=min(FUTURE_TOLERANCE, timedelta(seconds=config.max_clock_skew_seconds)),
                idle=timedelta(seconds=config.alert_idle_seconds), partitions=config.partitions)
        detectors.partitions = config.partitions            # the events topic's, also after a restore
        if detectors.detectors.run_deadline is not None:    # the setting of now, also after a restore
            detectors.detectors.run_deadline.limits = dict(self.deadlines)
        held = detectors.applied_to
        applied = await self.catch_up(detectors, partition, offset)
        if blob or applied:
            log.info("detector partition %d restored: snapshot to offset %d, %d packets after it", partition,
                     held, applied)
        self.detection[partition] = detectors
        self.snapshot_at[partition] = time.monotonic()
        return detectors

    async def catch_up(self, detectors: PartitionDetectors, partition: int, offset: int, *,
                       skipped: bool = False) -> int:
        """Apply the packets between the last one ``detectors`` hold and ``offset``, read from the topic
        (all of them after a restore; when ``skipped``, those the consumer may have dropped; none the
        log does not hold: ``read_again``), and tell the consumer they are handled; returns how
        many were applied."""
        start = detectors.applied_to + 1
        if offset <= start:
            return 0
        topic = self.config.detector_topic
        parts = not_known_done(self.app, topic, partition, start, offset) if skipped else [(start, offset)]
        applied = 0
        for first, end in parts:
            gap = await read_again(self.brokers, topic, partition, first, end, offset, self.stats)
            for record in gap:
                await self.apply_packet(detectors, record.offset, record.value, record.timestamp)
            applied += len(gap)
            mark_done(self.app, topic, partition, first, end)
        detectors.applied_to = offset - 1
        return applied

    async def judge_quiet_accounts(self) -> None:
        """Every few seconds, also when nothing arrives: what the wall clock alone makes
        judgeable (accounts whose input went quiet: ``streams.detectors.watermarks``)."""
        async with self.detecting:
            raised: list[Alert] = []
            now = datetime.now(UTC)
            for detectors in list(self.detection.values()):
                raised += detectors.advance(now, every_account=True)
            if raised:
                await self.deliver_alerts(raised)

    async def deliver_alerts(self, raised: list[Alert]) -> None:
        """Topic and table before the batch is acknowledged; the webhook in the background."""
        futures = [await self.alerts_topic.send(key=a.alert_id.encode(), value=orjson.dumps(alert_document(a)))
                   for a in raised]
        await asyncio.gather(*futures)
        columns = alert_columns(raised)
        token = batch_token("alerts", [(a.alert_id, a.state) for a in raised])
        await write_with_retry(lambda: self.warehouse.insert_columns("alert_events", columns, token),
                               self.stats, f"{len(raised)} alerts")
        self.stats.alerts += len(raised)
        for alert in raised:
            log.warning("alert %s: %s", alert.state, alert.summary)
            if self.webhook is not None:
                self.webhook.notify(alert)
