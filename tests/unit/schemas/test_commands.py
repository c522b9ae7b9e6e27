"""The command contract's models and parsing (schemas.commands): what is accepted, what is
refused with which reason, and the round trip through the topic's JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from schemas.commands import (
    MAX_RECORD_BYTES,
    CommandAction,
    CommandOutcome,
    CommandRejected,
    Outcome,
    override_problem,
    parse_command,
    parse_outcome,
    to_json,
)

BASE = {"command_id": "cmd-1", "account_id": "acme", "run_id": "run_1", "action": "replay", "mode": "exact",
        "requested_by": "ana@host", "requested_at": "2026-12-01T10:00:00.123Z"}


def _raw(**changes: object) -> bytes:
    doc = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not ...})


def test_a_replay_and_a_stop_parse_and_round_trip() -> None:
    replay = parse_command(_raw(mode="modified", overrides={"contact_id": "c-17", "workflow_version": "4"}))
    assert replay.action is CommandAction.REPLAY and replay.overrides == {"contact_id": "c-17", "workflow_version": "4"}
    assert replay.requested_at == datetime(2026, 12, 1, 10, 0, 0, 123000, tzinfo=UTC)
    assert parse_command(to_json(replay)) == replay
    stop = parse_command(_raw(action="stop", mode=...))
    assert stop.action is CommandAction.STOP and stop.mode is None and stop.overrides == {}
    assert orjson.loads(to_json(stop))["requested_at"] == "2026-12-01T10:00:00.123Z"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", "invalid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (_raw(extra_field=1), "extra_field: Extra inputs are not permitted"),
    (_raw(command_id=7), "command_id: Input should be a valid string"),
    (_raw(command_id=""), "command_id: String should have at least 1 character"),
    (_raw(run_id="r" * 513), "run_id: String should have at most 512 characters"),
    (_raw(action="delete"), "action: Input should be 'replay' or 'stop'"),
    (_raw(mode=...), "a replay needs a mode"),
    (_raw(overrides={"contact_id": "c-1"}), "an exact replay takes no overrides"),
    (_raw(action="stop"), "a stop takes no mode and no overrides"),
    (_raw(mode="modified", overrides={"status": "success"}), "'status' cannot be overridden"),
    (_raw(mode="modified", overrides={"workflow_version": "v2"}), "is not a version number"),
    (_raw(requested_at="2026-12-01T10:00:00"), "requested_at"),
    (_raw(requested_at="1999-12-31T23:59:59Z"), "time before 2000-01-01"),
    (_raw(schema_version=2), "schema_version 2 is not supported"),
    (b"{" + b" " * MAX_RECORD_BYTES + b"}", "larger than"),
])
def test_bad_commands_are_rejected_with_their_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_command(raw)
    assert reason in caught.value.reason


def test_parsing_never_raises_anything_else_on_hostile_bytes() -> None:
    for raw in (b"\xff\xfe", b"{\"a\": " * 5000, b"null", b"1e999999", orjson.dumps({**BASE, "overrides": [1]})):
        with pytest.raises(CommandRejected):
            parse_command(raw)


def test_an_outcome_has_a_new_run_id_exactly_when_it_replayed() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    done = Outcome(command_id="c", account_id="acme", run_id="r", action=CommandAction.REPLAY,
                   outcome=CommandOutcome.REPLAYED, new_run_id="run_2", decided_at=at)
    assert parse_outcome(to_json(done)) == done
    for outcome, new_run_id in ((CommandOutcome.REPLAYED, None), (CommandOutcome.STOPPED, "run_2")):
        doc = {**orjson.loads(to_json(done)), "outcome": outcome.value, "new_run_id": new_run_id}
        with pytest.raises(CommandRejected, match="new_run_id is set exactly when"):
            parse_outcome(orjson.dumps(doc))


def test_override_allow_list() -> None:
    assert override_problem("contact_id", "c-5") is None
    assert override_problem("workflow_version", "4294967295") is None
    assert override_problem("workflow_version", "4294967296") is not None
    assert override_problem("workflow_version", "٣") is not None      # non-ASCII digit
    assert override_problem("trigger", "manual") is not None
