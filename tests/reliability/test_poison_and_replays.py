"""Poison input in the stream, every event delivered twice, whole batches replayed, late and
out-of-order events: the views still equal the recomputation, and bad records are kept with
their reason and position, listed by `runlens dlq list` and re-published by `runlens dlq replay`."""

from __future__ import annotations

import random
import re
import time

import orjson

from producers.kafka import CheckedProducer
from schemas import Rejection, parse_event
from tests.helpers import run_cli, wait_caught_up
from tests.reliability.conftest import Workload, make_workload, oracle_problems, reader_of, report

RUN_ID = re.compile(rb'"run_id"\s*:\s*"([^"]+)"')


def test_poison_at_one_percent_is_dead_lettered_and_replayable(tmp_path, stack_factory):
    limit = 64 * 1024
    workload = make_workload(tmp_path, hours=3, bad_line_rate=0.01)
    valid = [ln for ln in workload.lines if not isinstance(parse_event(ln), Rejection)]
    rng = random.Random(3)
    oversize = []
    for line in rng.sample(valid, 20):   # valid events blown up past the limit: they become poison
        doc = orjson.loads(line)
        doc["event_id"] += "-big"
        doc["run_id"] += "-big"
        doc.setdefault("input", {})
        doc["input"] = {"blob": "x" * (limit + 1000)}
        if doc["type"] != "step.finished":
            doc["type"], doc["step_id"], doc["step_index"], doc["step_name"] = "step.finished", "s", 0, "big"
            doc.update(step_type="action", attempt=1, status="success", started_at=doc["ts"])
        oversize.append(orjson.dumps(doc))
    stack = stack_factory(max_event_bytes=limit)
    producer = CheckedProducer(stack.brokers)
    topic = stack.settings.events_topic
    no_key = 0
    started = time.monotonic()
    valid_set = set(valid)
    for line in workload.lines + oversize:
        found = RUN_ID.search(line)
        if line in valid_set and rng.random() < 0.002:
            producer.send(topic, line, key=None)       # a record without key: poison too
            no_key += 1
            continue
        producer.send(topic, line, key=found.group(1) if found else b"unknown")
    producer.flush()
    wait_caught_up(stack, timeout=300)
    seconds = time.monotonic() - started
    client = reader_of(stack)

    bad = sum(1 for ln in workload.lines if isinstance(parse_event(ln), Rejection))
    rows = client.query("SELECT raw, reason, source, source_partition, source_offset FROM rejected_events").result_rows
    report("poison", records=len(workload.lines) + len(oversize), bad_lines=bad, oversize=len(oversize),
           no_key=no_key, dead_letters=len(rows), events_per_s=round(len(workload.lines) / seconds))
    assert len(rows) == bad + len(oversize) + no_key
    assert all(source == topic and partition >= 0 and offset >= 0 for _, _, source, partition, offset in rows)
    for raw, reason, *_ in rows:   # no valid event is in the dead-letter store
        result = parse_event(raw.encode(), max_bytes=limit)
        assert isinstance(result, Rejection) or "no key" in reason, (reason, raw[:200])
    kept = [ln for ln in workload.lines if not isinstance(parse_event(ln), Rejection)]
    keyless_ids = {orjson.loads(raw)["event_id"] for raw, reason, *_ in rows if "no key" in reason}
    expected = Workload(workload.path, [ln for ln in kept if orjson.loads(ln)["event_id"] not in keyless_ids])
    assert oracle_problems(client, expected) == []

    listed = run_cli(stack.settings, "dlq", "list", "--reason-contains", "byte limit", "--limit", "100", "-f", "csv")
    assert listed.returncode == 0 and len(listed.stdout.decode().strip().splitlines()) == 1 + len(oversize)

    # The fix: a larger event limit. Restart the worker with it and replay the oversize ones.
    stack.stop_worker()
    stack.settings = stack.settings.model_copy(update={"max_event_bytes": 1024 * 1024})
    stack.start_worker()
    replay = run_cli(stack.settings, "dlq", "replay", "--reason-contains", "byte limit")
    assert replay.returncode == 0, replay.stderr
    assert f"{len(oversize)} published, 0 still invalid".encode() in replay.stdout
    wait_caught_up(stack, timeout=120)
    big_runs = client.query("SELECT count() FROM runs WHERE endsWith(run_id, '-big')").result_rows[0][0]
    assert big_runs == len({orjson.loads(ln)["run_id"] for ln in oversize})


def test_every_event_twice_and_the_whole_file_again_change_nothing(tmp_path, stack_factory):
    workload = make_workload(tmp_path, hours=3, duplicate_rate=1.0, reorder_rate=0.05, late_rate=0.05)
    stack = stack_factory()
    for _ in range(2):   # the second publish replays every batch
        assert run_cli(stack.settings, "publish", str(workload.path)).returncode == 0
    wait_caught_up(stack, timeout=300)
    assert oracle_problems(reader_of(stack), workload) == []
