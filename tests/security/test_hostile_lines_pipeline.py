"""The reproduced "one line stops ingestion for everyone" attacks, through the real pipeline
(Tansu broker, the Faust worker process, chDB): published with `runlens publish`, produced
straight to the events topic with a raw keyed producer (one record each, and mixed into
multi-line records between valid neighbours), and hostile records produced straight to the
dead-letter topic. The worker must never restart, every valid neighbour must be stored exactly
once, and every hostile line must be in `rejected_events` with a reason."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from confluent_kafka import Producer

from tests.helpers import run_cli, wait_caught_up, wait_for

pytestmark = [pytest.mark.security, pytest.mark.integration]

NOW = datetime.now(UTC)


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _context(account: str, run_id: str) -> dict:
    return {"schema_version": 1, "account_id": account, "run_id": run_id, "workflow_id": "wf-hostile",
            "workflow_name": "Hostile", "workflow_version": 1, "workflow_type": "contact", "trigger": "api"}


def _neighbours(account: str, prefix: str, runs: int) -> list[bytes]:
    """Valid runs an hour old: queued, started, one finished step, finished."""
    lines = []
    for n in range(runs):
        run_id, at = f"{prefix}-ok-{n}", NOW - timedelta(hours=1, seconds=n)
        ctx = _context(account, run_id)
        lines += [
            orjson.dumps({**ctx, "event_id": f"{run_id}-q", "type": "run.queued", "ts": _ts(at)}),
            orjson.dumps({**ctx, "event_id": f"{run_id}-s", "type": "run.started", "ts": _ts(at)}),
            orjson.dumps({**ctx, "event_id": f"{run_id}-f1", "type": "step.finished", "ts": _ts(at),
                          "step_id": "st1", "step_index": 0, "step_name": "Send", "step_type": "action",
                          "attempt": 1, "status": "success", "started_at": _ts(at), "input": {"n": 2**64 - 1}}),
            orjson.dumps({**ctx, "event_id": f"{run_id}-e", "type": "run.finished", "ts": _ts(at),
                          "status": "success", "started_at": _ts(at)}),
        ]
    return lines


def _hostile(account: str, prefix: str) -> dict[str, bytes]:
    """name -> one hostile line; each passed validation before the fix and then crashed the worker."""
    def step(name: str, **fields) -> dict:
        at = _ts(NOW - timedelta(minutes=30))
        return {**_context(account, f"{prefix}-bad-{name}"), "event_id": f"{prefix}-bad-{name}",
                "type": "step.finished", "ts": at, "step_id": "st1", "step_index": 0, "step_name": "x",
                "step_type": "action", "attempt": 1, "status": "success", "started_at": at, **fields}

    def nested(depth: int) -> bytes:
        return b'{"a":' * depth + b"1" + b"}" * depth

    def with_input(name: str, raw_input: bytes) -> bytes:
        return orjson.dumps(step(name)).replace(b'"status"', b'"input":' + raw_input + b',"status"', 1)

    later, too_early = _ts(NOW + timedelta(days=1)), "1970-01-01T00:00:00.000Z"
    return {
        "bigint": with_input("bigint", b'{"n":123456789012345678901234567890}'),
        "bigint-output": orjson.dumps(step("bigint-output")).replace(
            b'"status"', b'"output":{"list":[1,-9223372036854775809]},"status"', 1),
        "deep-300": with_input("deep-300", nested(300)),
        "deep-1000": with_input("deep-1000", nested(1000)),
        "deep-1000-unknown-field": orjson.dumps(step("deep-1000-unknown-field")).replace(
            b'"status"', b'"extra":' + nested(1000) + b',"status"', 1),
        "future": orjson.dumps(step("future", ts=later, started_at=later)),
        "ancient": orjson.dumps(step("ancient", ts=too_early, started_at=too_early)),
        "overflowing-offset": orjson.dumps(step("overflowing-offset", ts="0001-01-01T00:00:00.000+01:00")),
        "started-after-ts": orjson.dumps(step("started-after-ts", started_at=_ts(NOW - timedelta(minutes=1)))),
    }


def _rejected(reader, where: str, **params) -> list[tuple]:
    return reader.query(f"SELECT source, source_partition, source_offset, source_index, reason, raw "
                        f"FROM rejected_events WHERE {where}", parameters=params).result_rows


def _stored(reader, account: str) -> list[tuple]:
    return reader.query("SELECT event_id, count() FROM events FINAL WHERE account_id = {a:String} "
                        "GROUP BY event_id ORDER BY event_id", parameters={"a": account}).result_rows


@pytest.fixture(scope="module")
def worker_pid(embedded_stack):
    assert embedded_stack.worker is not None and embedded_stack.worker.poll() is None
    return embedded_stack.worker.pid


def _assert_worker_never_restarted(stack, pid: int) -> None:
    stack.supervise()   # restarts a dead worker, and counts it
    assert stack.worker_restarts == 0
    assert stack.worker is not None and stack.worker.poll() is None and stack.worker.pid == pid


def test_hostile_lines_published_with_the_cli(embedded_stack, stack_settings, reader, worker_pid, tmp_path):
    account, prefix = f"hostile-cli-{secrets.token_hex(3)}", "cli"
    good, bad = _neighbours(account, prefix, 5), _hostile(account, prefix)
    lines = []
    for n, line in enumerate(bad.values()):   # every hostile line between two valid ones
        lines += [good[n % len(good)], line]
    lines += good[len(bad):] + [b"", b"   "]
    path = tmp_path / "hostile.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = run_cli(stack_settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    assert f"published {len(good)} events, rejected {len(bad)} lines".encode() in result.stdout
    wait_caught_up(embedded_stack)

    _assert_worker_never_restarted(embedded_stack, worker_pid)
    assert _stored(reader, account) == sorted((orjson.loads(line)["event_id"], 1) for line in good)
    assert reader.query("SELECT count(), countIf(status = 'success') FROM runs WHERE account_id = {a:String}",
                        parameters={"a": account}).result_rows == [(5, 5)]
    rows = _rejected(reader, "source = {s:String}", s=f"file:{path}")
    assert sorted(raw.encode() for *_, raw in rows) == sorted(bad.values())
    assert all(reason for *_, reason, _ in rows)


def test_hostile_records_produced_straight_to_the_topics(embedded_stack, stack_settings, reader, worker_pid):
    account, prefix = f"hostile-raw-{secrets.token_hex(3)}", "raw"
    good, bad = _neighbours(account, prefix, 40), _hostile(account, prefix)
    settings = stack_settings
    producer = Producer({"bootstrap.servers": embedded_stack.brokers, "message.max.bytes": 2_000_000,
                         "linger.ms": 5})
    delivered: dict[str, tuple[int, int]] = {}

    def send(name: str, value: bytes | None, key: bytes | None, topic: str = settings.events_topic,
             headers=None) -> None:
        def report(err, msg) -> None:
            assert err is None, err
            delivered[name] = (msg.partition(), msg.offset())
        producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)

    run_key = prefix.encode() + b"-ok-0"
    for name, line in bad.items():                                        # one record per hostile line
        send(f"alone:{name}", line, key=orjson.loads(line)["run_id"].encode())
    mixed = []                                                            # and all of them between neighbours
    for n, line in enumerate(bad.values()):
        mixed += [good[n], line]
    send("mixed", b"\n".join(mixed), key=run_key)
    send("neighbours", b"\n".join(good[len(bad):100]) + b"\n", key=run_key)
    send("neighbours-rest", b"\n".join(good[100:]), key=run_key)
    send("empty-lines", b"\n" * 1_000_000, key=run_key)                   # 1 MB of nothing
    send("501-lines", b"\n".join([good[0]] * 501), key=run_key)           # over the line bound: one dead letter
    send("no-key", good[1], key=None)
    send("no-value", None, key=run_key)
    marker = f"{prefix}-dlq-{secrets.token_hex(3)}".encode()
    hostile_dead_letters = {
        "dlq-non-numeric": [("runlens.source_partition", b"abc"), ("runlens.reason", b"planted")],
        "dlq-offset-beyond-int32": [("runlens.source_partition", b"2147483648"),
                                    ("runlens.source_offset", b"99999999999999999999999")],
        "dlq-no-headers": None,
        "dlq-odd-headers": [("runlens.source_index", b"-1"), ("runlens.field", b"\xff\xfe"), ("x", None),
                            ("runlens.reason", None)],
    }
    for name, headers in hostile_dead_letters.items():
        send(name, marker + b" " + name.encode(), key=None, topic=settings.dead_letter_topic, headers=headers)
    assert producer.flush(60) == 0
    assert len(delivered) == len(bad) + 7 + len(hostile_dead_letters)

    wait_caught_up(embedded_stack)
    _assert_worker_never_restarted(embedded_stack, worker_pid)

    # every valid neighbour stored exactly once (good[0] and good[1] also rode in records that were rejected)
    assert _stored(reader, account) == sorted((orjson.loads(line)["event_id"], 1) for line in good)
    assert reader.query("SELECT count(), countIf(status = 'success') FROM runs WHERE account_id = {a:String}",
                        parameters={"a": account}).result_rows == [(40, 40)]

    # every hostile line dead-lettered with a reason, once alone and once inside the mixed record
    rows = _rejected(reader, "source = {s:String}", s=settings.events_topic)
    by_position = {(p, o, i): (reason, raw) for _, p, o, i, reason, raw in rows}
    for n, (name, line) in enumerate(bad.items()):
        partition, offset = delivered[f"alone:{name}"]
        reason, raw = by_position[(partition, offset, 0)]
        assert reason and raw.encode() == line, name
        partition, offset = delivered["mixed"]
        reason, raw = by_position[(partition, offset, 2 * n + 1)]
        assert reason and raw.encode() == line, name
    partition, offset = delivered["empty-lines"]
    assert [reason for (p, o, _), (reason, _) in by_position.items() if (p, o) == (partition, offset)] == [
        "record has 1000000 lines, over the 500-line record limit (dead-lettered whole) "
        "(kept the first 786432 of 1000000 bytes)"]
    partition, offset = delivered["501-lines"]
    assert [reason for (p, o, _), (reason, _) in by_position.items() if (p, o) == (partition, offset)] == [
        "record has 501 lines, over the 500-line record limit (dead-lettered whole)"]
    assert "no key" in by_position[(*delivered["no-key"], 0)][0]
    assert by_position[(*delivered["no-value"], 0)][0] == "record has no value"

    # hostile dead-letter records are stored with defaults, their odd header text kept in the reason
    planted = wait_for(lambda: _rejected(reader, "startsWith(raw, {m:String})", m=marker.decode()),
                       lambda found: len(found) == len(hostile_dead_letters), what="planted dead letters")
    reasons = {raw.split(" ", 1)[1]: (source, p, o, i, reason) for source, p, o, i, reason, raw in planted}
    assert reasons["dlq-non-numeric"] == ("unknown", -1, -1, 0,
                                          "planted [unreadable dead-letter headers: source_partition='abc']")
    assert reasons["dlq-offset-beyond-int32"][1:4] == (-1, -1, 0)
    assert "source_partition='2147483648'" in reasons["dlq-offset-beyond-int32"][4]
    assert reasons["dlq-no-headers"] == ("unknown", -1, -1, 0, "unknown")
    assert reasons["dlq-odd-headers"][1:4] == (-1, -1, 0) and "source_index='-1'" in reasons["dlq-odd-headers"][4]
