"""A stack of its own with the stand-in engine answering commands, for the command tests
(tests/integration/test_commands.py, tests/security/test_command_tenancy.py): two accounts'
last two hours sent by the simulator with its ``RunBook``, runs still in flight at the end left
running, and a ``CommandServer`` consuming ``<prefix>.commands``. Session-scoped: one stack for
both modules.

The two hours hold a failure spike of acme's wf-welcome: without it how many acme runs failed
depended on the time of day (one at 10:00 UTC, fewer on weekends), and the tests replay several
(a fresh-clone run at 09:18 UTC found too few). With it: at least 4 at any hour of the week."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from producers.engine import CommandServer, RunBook, start_engine
from producers.kafka import CheckedProducer
from producers.simulate import EventSink, run_simulation
from producers.workload import Spike, WorkloadConfig
from runlens.settings import Settings
from tests.helpers import own_stack, wait_caught_up, wait_for

CONFIG = WorkloadConfig(seed=23, accounts=2, backfill_runs_per_hour=900, replay_probability=0.0)


@dataclass
class CommandWorld:
    stack: Any
    reader: Any
    settings: Settings
    server: CommandServer
    book: RunBook
    producer: CheckedProducer

    def rows(self, sql: str, **params: Any) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.reader.query(sql, parameters=params).result_rows]

    def outcome(self, account: str, command_id: str, timeout: float = 90) -> tuple[Any, ...]:
        """The stored outcome of a command (waits until the worker stored it)."""
        found = wait_for(lambda: self.rows(
            "SELECT outcome, new_run_id, reason, run_id FROM commands WHERE account_id = {a:String} "
            "AND command_id = {c:String}", a=account, c=command_id),
            lambda rows: len(rows) == 1 and rows[0][0] is not None, timeout=timeout,
            what=f"the outcome of {command_id}")
        return found[0]

    def commands_end(self) -> int:
        """The end offset of the commands topic: what has been published on it so far."""
        consumer = Consumer({"bootstrap.servers": self.stack.brokers, "group.id": "probe"})
        try:
            return consumer.get_watermark_offsets(TopicPartition(self.settings.commands_topic, 0), timeout=10)[1]
        finally:
            consumer.close()


@pytest.fixture(scope="session", name="command_world")
def command_world_fixture(tmp_path_factory, run_prefix) -> Iterator[CommandWorld]:
    with own_stack(tmp_path_factory, run_prefix, "cm") as (stack, reader):
        settings = stack.settings
        book, now = RunBook(), datetime.now(UTC)
        config = replace(CONFIG, spikes=(Spike("acme/wf-welcome", at=now - timedelta(minutes=100), rate=0.8,
                                               minutes=60),))
        server = start_engine(config, book, stack.brokers, commands_topic=settings.commands_topic,
                              outcomes_topic=settings.command_outcomes_topic, events_topic=settings.events_topic,
                              group=settings.engine_group)
        producer = CheckedProducer(stack.brokers)
        try:
            run_simulation(config, EventSink(producer, settings.events_topic), backfill=timedelta(hours=2),
                           duration=timedelta(0), now=now, pace=False, book=book)
            wait_caught_up(stack)
            yield CommandWorld(stack, reader, settings, server, book, producer)
        finally:
            server.stop()
