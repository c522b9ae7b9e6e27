"""The stand-in engine's side of the command contract (docs/commands.md): what ``runlens
simulate`` and the demo do with replay and stop commands.

- ``RunBook``: what the engine knows of the runs it emitted (each run's workflow, version,
  trigger, contact, site, state, where it failed), fed with every event it sends (``admit``),
  which also drops the later events of a run that was stopped.
- ``CommandEngine``: decides (``handle``): a replay of a finished run becomes a new run of the
  same workflow with ``replay_of`` / ``replay_mode`` (``RunRenderer``, the workload's own run
  code), emitted as its times come (``due``); a stop of a running run ends it as ``stopped`` now,
  keeping its finished steps (a step in progress finishes ``skipped``); a stop of a finished run
  is ``already_finished``; a run the engine does not know in that account is ``unknown_run``, or
  ``refused`` when it is a run of another account.
- ``CommandServer``: the engine on the topics, in a thread.

Promises: a ``command_id`` acts once per account; a repeat is answered with the first outcome
(``handled``), and a restarted engine re-reads the outcomes topic first (``read_outcomes``). The
outcome is published, and the commands' offsets committed, only after the events the command
caused were handed to the producer; a crash in between may act again on restart, which for a
replay renders the very same run (its randomness, run id and event ids come from the command
id), so the warehouse stores it once. The generated workload itself is unchanged by commands
(same seed, same events), except that a stopped run's later events are not sent.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from producers.kafka import CheckedProducer, EventBatcher, read_partitions
from producers.workload.generator import RunRenderer
from producers.workload.spec import WorkloadConfig
from schemas.commands import (
    Command,
    CommandAction,
    CommandOutcome,
    CommandRejected,
    Outcome,
    parse_command,
    parse_outcome,
    to_json,
)
from schemas.events import ReplayMode

log = logging.getLogger(__name__)

_CONTEXT_FIELDS = ("account_id", "run_id", "workflow_id", "workflow_name", "workflow_version",
                   "workflow_version_name", "workflow_type", "trigger", "site_id", "site_name", "card_id",
                   "card_name", "contact_id", "replay_of", "replay_mode")
_CONTACT = re.compile(r"c-([0-9]{1,9})", re.ASCII)


def fmt_time(value: datetime) -> str:
    """The contract's time text: RFC 3339 UTC with milliseconds and Z (sorts as it compares)."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@dataclass(slots=True)
class KnownRun:
    account_id: str
    run_id: str
    workflow_id: str
    version: int
    trigger: str
    contact_id: str | None
    site_id: str | None
    state: str = "pending"            # pending, running, finished (incl. stopped by a command)
    status: str | None = None         # the final status once finished
    started_ts: str | None = None
    failed_step: int = -1
    failed_code: str | None = None
    context: dict[str, Any] | None = None     # while not finished: what its closing events carry
    open_step: dict[str, Any] | None = None   # the step.started event of a step in progress


class RunBook:
    """The runs the engine emitted, by (account, run id). Thread-safe: ``lock`` is held by
    ``admit`` and by the engine's decisions, so a run cannot finish and be stopped at once."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.runs: dict[tuple[str, str], KnownRun] = {}
        self.account_of: dict[str, str] = {}   # run id -> the (first) account it was seen in
        self.stopped: set[tuple[str, str]] = set()

    def admit(self, event: dict[str, Any]) -> bool:
        """Record ``event`` before it is sent; False: drop it (its run was stopped)."""
        key = (event["account_id"], event["run_id"])
        with self.lock:
            if key in self.stopped:
                return False
            run = self.runs.get(key)
            if run is None:
                run = KnownRun(key[0], key[1], event["workflow_id"], int(event["workflow_version"]), event["trigger"],
                               event.get("contact_id"), event.get("site_id"),
                               context={k: event.get(k) for k in _CONTEXT_FIELDS})
                self.runs[key] = run
                self.account_of.setdefault(key[1], key[0])
            kind = event["type"]
            if kind == "run.started":
                run.state, run.started_ts = "running", event["ts"]
            elif kind == "step.started":
                run.open_step = event
            elif kind == "step.finished":
                run.open_step = None
                if event.get("status") == "failed":
                    run.failed_step = int(event["step_index"])
            elif kind == "run.finished":
                run.state, run.status, run.context, run.open_step = "finished", event["status"], None, None
                error = event.get("error")
                run.failed_code = error.get("code") if isinstance(error, dict) else None
            return True


class CommandEngine:
    """Decides what each command does (``handle``) and holds the events it caused until their
    time (``due``)."""

    def __init__(self, book: RunBook, renderer: RunRenderer):
        self.book, self.renderer = book, renderer
        self.handled: dict[tuple[str, str], Outcome] = {}
        self._pending: list[tuple[str, int, dict[str, Any]]] = []
        self._ready: list[dict[str, Any]] = []
        self._seq = 0
        self._pending_lock = threading.Lock()

    def remember(self, outcomes: list[Outcome]) -> None:
        """Outcomes decided before (a restart re-reads the outcomes topic): never acted on again."""
        with self.book.lock:
            for outcome in outcomes:
                self.handled.setdefault((outcome.account_id, outcome.command_id), outcome)

    def handle(self, command: Command, now: datetime) -> tuple[Outcome, bool]:
        """The outcome of ``command`` and whether it acted now (False: a repeat, answered with
        the first outcome)."""
        key = (command.account_id, command.command_id)
        with self.book.lock:
            known = self.handled.get(key)
            if known is not None:
                return known, False
            outcome_kind, reason, new_run_id = self._decide(command, now)
            outcome = Outcome(command_id=command.command_id, account_id=command.account_id, run_id=command.run_id,
                              action=command.action, outcome=outcome_kind, new_run_id=new_run_id,
                              reason=reason[:2048], decided_at=now)
            self.handled[key] = outcome
            return outcome, True

    def due(self, now: datetime) -> list[dict[str, Any]]:
        """The held events whose time has come, admitted to the book (a stopped run's dropped)."""
        cut = fmt_time(now)
        ready = []
        with self._pending_lock:
            while self._pending and self._pending[0][0] <= cut:
                ready.append(heapq.heappop(self._pending)[2])
        return [event for event in ready if self.book.admit(event)]

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _hold(self, events: list[dict[str, Any]]) -> None:
        with self._pending_lock:
            for event in events:
                self._seq += 1
                heapq.heappush(self._pending, (event["ts"], self._seq, event))

    def _decide(self, command: Command, now: datetime) -> tuple[CommandOutcome, str, str | None]:
        account, run_id = command.account_id, command.run_id
        run = self.book.runs.get((account, run_id))
        if run is None:
            if run_id in self.book.account_of:
                return CommandOutcome.REFUSED, f"run {run_id} is not a run of account {account}", None
            return CommandOutcome.UNKNOWN_RUN, f"no run {run_id} in account {account}", None
        if command.action is CommandAction.STOP:
            if run.state == "finished":
                return CommandOutcome.ALREADY_FINISHED, f"run {run_id} already finished ({run.status})", None
            self._stop(run, now, command.requested_by)
            return CommandOutcome.STOPPED, "stopped by " + command.requested_by, None
        return self._replay(command, run, now)

    def _stop(self, run: KnownRun, now: datetime, by: str) -> None:
        """End ``run`` now as stopped: its finished steps stay, a step in progress is skipped."""
        ts = fmt_time(now)
        context = run.context or {}
        events: list[dict[str, Any]] = []
        if run.open_step is not None:
            step = run.open_step
            events.append({**step, "event_id": f"{run.run_id}-stop-step", "type": "step.finished", "ts": ts,
                           "status": "skipped", "started_at": step["ts"], "output": {"stopped_by": by}})
        events.append({"event_id": f"{run.run_id}-stop", "schema_version": 1, "type": "run.finished", "ts": ts,
                       **context, "status": "stopped", "started_at": run.started_ts or ts})
        run.state, run.status, run.context, run.open_step = "finished", "stopped", None, None
        self.book.stopped.add((run.account_id, run.run_id))
        with self._pending_lock:   # sent as they are (``due`` would drop them: the run is stopped)
            self._ready.extend(events)

    def take_ready(self) -> list[dict[str, Any]]:
        """Events to send now, outside the book (a stop's closing events)."""
        with self._pending_lock:
            ready, self._ready = self._ready, []
        return ready

    def _replay(self, command: Command, run: KnownRun, now: datetime) -> tuple[CommandOutcome, str, str | None]:
        account, run_id = command.account_id, command.run_id
        if run.state != "finished":
            return CommandOutcome.REFUSED, f"run {run_id} has not finished yet (stop it first)", None
        if not self.renderer.workflow_known(account, run.workflow_id):
            return CommandOutcome.REFUSED, f"workflow {run.workflow_id} is not one this engine runs", None
        modified = command.mode is ReplayMode.MODIFIED
        latest = self.renderer.current_version(account, run.workflow_id, now)
        version = run.version
        if modified:
            given = command.overrides.get("workflow_version")
            version = int(given) if given is not None else latest
            if not 1 <= version <= max(latest, run.version):
                return CommandOutcome.REFUSED, f"workflow_version {version} does not exist (1..{latest})", None
        contact_id = command.overrides.get("contact_id", run.contact_id) if modified else run.contact_id
        contact = None
        if contact_id is not None:
            match = _CONTACT.fullmatch(contact_id)
            if match is None:
                return CommandOutcome.REFUSED, f"contact_id {contact_id[:60]!r} is not a contact (c-<number>)", None
            contact = int(match.group(1))
        seed = int.from_bytes(hashlib.blake2b(f"{account}\0{command.command_id}".encode(), digest_size=8).digest(),
                              "big")
        events = self.renderer.render_replay(
            account, run.workflow_id, now, seed, replay_of=run_id, replay_mode=command.mode.value if command.mode
            else "exact", version=version, trigger="manual" if modified else run.trigger, contact=contact,
            site_id=run.site_id, failed_step=run.failed_step if run.status == "failed" else -1,
            failed_code=run.failed_code if run.status == "failed" else None)
        self._hold(events)
        new_run_id = events[0]["run_id"]
        return CommandOutcome.REPLAYED, f"{command.mode.value if command.mode else 'exact'} replay of {run_id}", \
            new_run_id

def read_outcomes(brokers: str, topic: str, timeout: float = 15.0) -> list[Outcome]:
    """Every valid outcome on ``topic`` from its beginning to its current end (what a restarted
    engine already decided). Invalid records are skipped (the worker dead-letters them). Raises
    ``BrokerUnavailable`` when the topic cannot be read to its end within ``timeout``."""
    found: list[Outcome] = []
    for record in read_partitions(brokers, topic, timeout=timeout):
        try:
            found.append(parse_outcome(record.value or b""))
        except CommandRejected:
            continue
    return found


class CommandServer:
    """The engine on the topics: consumes ``commands_topic`` (consumer group ``group``), sends the
    events commands cause to ``events_topic`` when their time comes, and each outcome to
    ``outcomes_topic``, keyed by run id. Runs in a thread between ``start()`` and ``stop()``; an
    error that ends the thread is raised again by ``stop()``. ``clock``: the engine's now."""

    def __init__(self, engine: CommandEngine, brokers: str, *, commands_topic: str, outcomes_topic: str,
                 events_topic: str, group: str, clock: Callable[[], datetime] | None = None):
        self.engine, self.brokers = engine, brokers
        self.commands_topic, self.outcomes_topic, self.group = commands_topic, outcomes_topic, group
        self.clock = clock or (lambda: datetime.now(UTC))
        self.producer = CheckedProducer(brokers)
        self.events = EventBatcher(self.producer, events_topic)
        self.handled = 0
        self.acted = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> CommandServer:
        """Re-read the outcomes decided before, then serve in a thread; returns once subscribed."""
        self.engine.remember(read_outcomes(self.brokers, self.outcomes_topic))
        self._thread = threading.Thread(target=self._serve, name="runlens-command-server", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.events.flush()
        if self.error is not None:
            raise self.error

    def __enter__(self) -> CommandServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _serve(self) -> None:
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.brokers, "group.id": self.group,
                             "auto.offset.reset": "earliest", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 50, "session.timeout.ms": 6000,
                             "socket.connection.setup.timeout.ms": 5000})
        try:
            consumer.subscribe([self.commands_topic])
            self._ready.set()
            while not self._stop.is_set():
                message = consumer.poll(0.1)
                if message is not None and message.error() is None:
                    self._handle(message.value() or b"")
                    consumer.commit(message=message, asynchronous=False)
                self._send_due()
        except BaseException as exc:  # noqa: BLE001 - kept for stop() to raise
            log.exception("command server stopped on an error")
            self.error = exc
        finally:
            self._ready.set()
            consumer.close()

    def _handle(self, raw: bytes) -> None:
        try:
            command = parse_command(raw)
        except CommandRejected as exc:   # stored as a dead letter by the worker; nothing to answer
            log.warning("ignoring an invalid command: %s", exc.reason)
            return
        outcome, acted = self.engine.handle(command, self.clock())
        self.handled += 1
        self.acted += acted
        self._send_due()
        self.producer.send(self.outcomes_topic, to_json(outcome), key=command.run_id.encode())
        self.events.flush()   # the events it caused, then its outcome, acknowledged before the commit

    def _send_due(self) -> None:
        events = self.engine.take_ready() + self.engine.due(self.clock())
        for event in events:
            self.events.send(event["run_id"], orjson.dumps(event))
        if events:
            self.events.push()



def start_engine(config: WorkloadConfig, book: RunBook, brokers: str, *, commands_topic: str, outcomes_topic: str,
                 events_topic: str, group: str, clock: Callable[[], datetime] | None = None) -> CommandServer:
    """A started ``CommandServer`` answering for the runs of ``book``, replaying with ``config``'s
    catalog and versions (stop it with ``stop()``)."""
    engine = CommandEngine(book, RunRenderer(config))
    return CommandServer(engine, brokers, commands_topic=commands_topic, outcomes_topic=outcomes_topic,
                         events_topic=events_topic, group=group, clock=clock).start()
