"""The stand-in engine's decisions (producers.engine) over a real generated workload: replays
become new runs with their lineage, stops end running runs keeping their finished steps, and
every command id acts once. Pure: no broker (the server's Kafka loop is tested in
tests/integration/test_commands.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from producers.commands import make_command
from producers.engine import CommandEngine, RunBook
from producers.workload import WorkloadConfig, generate
from producers.workload.generator import RunRenderer
from schemas import Rejection, parse_event
from schemas.commands import CommandAction, CommandOutcome
from schemas.events import ReplayMode

START = datetime(2026, 11, 30, 8, tzinfo=UTC)
END = START + timedelta(hours=3)
CONFIG = WorkloadConfig(seed=3, accounts=2, backfill_runs_per_hour=600, replay_probability=0.0)


@pytest.fixture(scope="module")
def workload() -> list[dict[str, Any]]:
    return list(generate(CONFIG, START, END))


def _engine(events: list[dict[str, Any]]) -> CommandEngine:
    book = RunBook()
    for event in events:
        assert book.admit(event)
    return CommandEngine(book, RunRenderer(CONFIG))


def _finished(events: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return next(e for e in events if e["type"] == "run.finished" and e["status"] == status)


def test_a_replay_of_a_failed_run_is_a_new_valid_run_of_the_same_workflow(workload: list[dict[str, Any]]) -> None:
    engine = _engine(workload)
    failed = _finished(workload, "failed")
    command = make_command(failed["account_id"], failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.EXACT,
                           command_id="cmd-a", requested_by="test")
    outcome, acted = engine.handle(command, END)
    assert acted and outcome.outcome is CommandOutcome.REPLAYED and outcome.new_run_id
    assert outcome.new_run_id != failed["run_id"]
    events = engine.due(END + timedelta(days=1))
    assert events and {e["run_id"] for e in events} == {outcome.new_run_id}
    assert {(e["replay_of"], e["replay_mode"], e["workflow_id"], e["workflow_version"], e["trigger"],
             e["contact_id"]) for e in events} == {(failed["run_id"], "exact", failed["workflow_id"],
                                                    failed["workflow_version"], failed["trigger"],
                                                    failed["contact_id"])}
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.finished"
    for event in events:   # every event satisfies the contract
        assert not isinstance(parse_event(orjson.dumps(event)), Rejection), event
    # the replayed run is known to the engine now: stopping it is already_finished
    stop = make_command(failed["account_id"], outcome.new_run_id, CommandAction.STOP, command_id="cmd-b")
    assert engine.handle(stop, END + timedelta(days=1))[0].outcome is CommandOutcome.ALREADY_FINISHED


def test_the_same_command_id_acts_once_and_a_replay_is_the_same_run_anywhere(
        workload: list[dict[str, Any]]) -> None:
    failed = _finished(workload, "failed")
    command = make_command(failed["account_id"], failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.EXACT,
                           command_id="cmd-once")
    engine = _engine(workload)
    first, acted = engine.handle(command, END)
    again, acted_again = engine.handle(command, END + timedelta(minutes=5))
    assert acted and not acted_again and again == first
    assert len(engine.due(END + timedelta(days=1))) > 0
    assert engine.due(END + timedelta(days=2)) == []   # nothing more was scheduled by the repeat
    # another engine (a restart that lost its memory) renders the very same run for this command id
    other = _engine(workload)
    assert other.handle(command, END)[0].new_run_id == first.new_run_id
    # and one that re-read the outcomes does not act at all
    restarted = _engine(workload)
    restarted.remember([first])
    assert restarted.handle(command, END) == (first, False)


def test_stop_ends_a_running_run_and_keeps_its_finished_steps(workload: list[dict[str, Any]]) -> None:
    # a run that has finished a step and started another at the cut: send only what came before
    by_run: dict[str, list[dict[str, Any]]] = {}
    for event in workload:
        by_run.setdefault(event["run_id"], []).append(event)
    run_id, events = next((r, evs) for r, evs in by_run.items()
                          if len([e for e in evs if e["type"] == "step.finished"]) >= 2)
    cut = next(i for i, e in enumerate(events) if e["type"] == "step.started" and i > 3)
    before, after = events[:cut + 1], events[cut + 1:]
    others = [e for e in workload if e["run_id"] != run_id]
    engine = _engine(others + before)
    now = datetime.fromisoformat(before[-1]["ts"].replace("Z", "+00:00")) + timedelta(seconds=1)
    command = make_command(events[0]["account_id"], run_id, CommandAction.STOP, command_id="cmd-stop",
                           requested_by="ops@host")
    outcome, acted = engine.handle(command, now)
    assert acted and outcome.outcome is CommandOutcome.STOPPED
    closing = engine.take_ready()
    assert [(e["type"], e["status"]) for e in closing] == [("step.finished", "skipped"), ("run.finished", "stopped")]
    assert closing[0]["step_id"] == before[-1]["step_id"] and closing[0]["output"] == {"stopped_by": "ops@host"}
    for event in closing:
        assert not isinstance(parse_event(orjson.dumps(event)), Rejection), event
    # the finished steps stay (nothing undoes them); the run's later events are no longer sent
    assert not any(engine.book.admit(e) for e in after)
    assert engine.handle(command, now)[1] is False
    again = make_command(events[0]["account_id"], run_id, CommandAction.STOP, command_id="cmd-stop-2")
    assert engine.handle(again, now)[0].outcome is CommandOutcome.ALREADY_FINISHED


def test_unknown_runs_other_accounts_and_bad_overrides(workload: list[dict[str, Any]]) -> None:
    engine = _engine(workload)
    failed = _finished(workload, "failed")
    account = failed["account_id"]
    other = next(e["account_id"] for e in workload if e["account_id"] != account)
    cases = [
        (make_command(account, "run_nope", CommandAction.STOP, command_id="c1"), CommandOutcome.UNKNOWN_RUN),
        (make_command(other, failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.EXACT, command_id="c2"),
         CommandOutcome.REFUSED),
        (make_command(account, failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.MODIFIED,
                      overrides={"contact_id": "someone"}, command_id="c3"), CommandOutcome.REFUSED),
        (make_command(account, failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.MODIFIED,
                      overrides={"workflow_version": "999"}, command_id="c4"), CommandOutcome.REFUSED),
    ]
    for command, expected in cases:
        outcome, _ = engine.handle(command, END)
        assert outcome.outcome is expected, outcome
        if command.command_id == "c2":
            assert account not in outcome.reason   # the run's real owner is not disclosed
    assert engine.due(END + timedelta(days=1)) == []


def test_a_modified_replay_takes_its_overrides(workload: list[dict[str, Any]]) -> None:
    engine = _engine(workload)
    failed = _finished(workload, "failed")
    command = make_command(failed["account_id"], failed["run_id"], CommandAction.REPLAY, mode=ReplayMode.MODIFIED,
                           overrides={"contact_id": "c-10042", "workflow_version": "1"}, command_id="cmd-mod")
    outcome, _ = engine.handle(command, END)
    assert outcome.outcome is CommandOutcome.REPLAYED
    events = engine.due(END + timedelta(days=1))
    assert {(e["replay_mode"], e["trigger"], e["contact_id"], e["workflow_version"]) for e in events} == {
        ("modified", "manual", "c-10042", 1)}


def test_the_workload_is_unchanged_by_the_renderer(workload: list[dict[str, Any]]) -> None:
    renderer = RunRenderer(CONFIG)
    failed = _finished(workload, "failed")
    renderer.render_replay(failed["account_id"], failed["workflow_id"], END, 1, replay_of=failed["run_id"],
                           replay_mode="exact", version=1, trigger="manual", contact=None, site_id=None)
    assert list(generate(CONFIG, START, END)) == workload
