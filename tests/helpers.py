"""Test helpers: run the real CLI in a child process, wait for the warehouse to converge."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from runlens.settings import Settings

T = TypeVar("T")


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNLENS_")}
    env.update(settings.to_env())
    env.update(extra)
    return env


def run_cli(settings: Settings, *args: str, input: bytes | None = None, timeout: float = 300,
            **extra_env: str) -> subprocess.CompletedProcess:
    """Run ``runlens ARGS`` as a user would, in a child process with these settings."""
    return subprocess.run([sys.executable, "-m", "runlens", *args], input=input,
                          capture_output=True, env=cli_env(settings, **extra_env), timeout=timeout)


def wait_for(probe: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 60,
             interval: float = 0.5, what: str = "condition", stall: float | None = None) -> T:
    """Poll ``probe`` until ``done(value)``; fail with the last value seen after ``timeout``.
    With ``stall``: fail as soon as the value stayed the same for ``stall`` seconds, and a value
    that keeps changing may take up to ``timeout`` (a slow machine is not a stuck pipeline)."""
    started = moved = time.monotonic()
    value = probe()
    while not done(value):
        now = time.monotonic()
        if now - started > timeout or (stall is not None and now - moved > stall):
            why = f"no change for {stall}s" if now - started <= timeout else f"timed out after {timeout}s"
            raise AssertionError(f"{why} waiting for {what}; last value: {value!r}")
        time.sleep(interval)
        value, before = probe(), value
        if value != before:
            moved = time.monotonic()
    return value


def wait_caught_up(stack, timeout: float = 120) -> None:
    """Wait until the worker committed every record of the events and dead-letter topics."""
    from producers.kafka import partition_lags

    s = stack.settings

    def lagging() -> dict[tuple[str, int], int]:   # named on a timeout: which partitions are behind
        lags = partition_lags(stack.brokers, s.consumer_group, [s.events_topic, s.dead_letter_topic])
        return {tp: lag for tp, lag in lags.items() if lag}

    wait_for(lagging, lambda lags: not lags, timeout=timeout, what="consumer lag to reach 0")


@contextmanager
def workers_paused(stack) -> Iterator[None]:
    """The stack's workers stopped (SIGSTOP) inside the block and continued after it: what is
    published meanwhile is read as a backlog, never as a trickle with quiet gaps."""
    for worker in stack.workers:
        os.kill(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for worker in stack.workers:
            os.kill(worker.pid, signal.SIGCONT)


@contextmanager
def own_stack(tmp_path_factory, run_prefix: str, name: str) -> Iterator[tuple]:
    """A stack of a test module's own (its own data dir, topics and database) and a read-only
    client on it: ``(stack, reader)``. For modules whose truth is the whole warehouse."""
    from embedded.stack import EmbeddedStack
    from sinks.clickhouse import connect

    settings = Settings(data_dir=tmp_path_factory.mktemp(f"{name}-stack"), topic_prefix=f"{run_prefix}{name}",
                        database=f"{run_prefix}_{name}")
    with EmbeddedStack(settings) as stack:
        client = connect(stack.reader_dsn, database=settings.database)
        try:
            yield stack, client
        finally:
            client.close()
