"""The attack as an outsider makes it: a realistic workload whose truth is known (duplicates,
reordering, late and bad lines, a failure spike) with hostile lines mixed in, published through
`runlens publish` and a raw producer, another account's clock dated days ahead, and an
authenticated reader trying to write files and read the host while it runs. Afterwards every
valid event is stored exactly once, `runs`, `steps` and `run_stats` equal the recomputation,
the spike is alerted, the worker never restarted, and nothing outside the data directory
changed. A stack of its own, so that its truth is the whole warehouse."""

from __future__ import annotations

import http.client
import threading
from base64 import b64encode
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import orjson
import pytest
from confluent_kafka import Producer

from producers.workload import Spike, WorkloadConfig, generate, perturb
from tests.helpers import own_stack, run_cli, wait_caught_up
from tests.oracle import (
    actual_runs,
    actual_steps,
    diff,
    expected_run_stats,
    expected_runs,
    expected_steps,
    run_ids_mentioned,
    valid_events,
)
from tests.security.test_hostile_lines_pipeline import _hostile

pytestmark = [pytest.mark.security, pytest.mark.integration]

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
START, END = NOW - timedelta(hours=3, minutes=30), NOW - timedelta(minutes=20)
SPIKE_AT = START + timedelta(minutes=90)
SPIKE_MINUTES = timedelta(minutes=20)
DETECTION_BOUND = timedelta(minutes=20)
RUN_KEY = ("bucket", "account_id", "workflow_id", "workflow_version", "workflow_type", "trigger", "site_id",
           "card_id")


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _from_the_future(account: str) -> list[bytes]:
    """Runs of another account dated two days and eight thousand years ahead."""
    lines = []
    for n, at in enumerate((NOW + timedelta(days=2), datetime(9999, 12, 31, tzinfo=UTC))):
        ctx = {"schema_version": 1, "account_id": account, "run_id": f"future-{n}", "workflow_id": "wf-clock",
               "workflow_name": "Clock", "workflow_version": 1, "workflow_type": "contact", "trigger": "api"}
        lines += [orjson.dumps({**ctx, "event_id": f"future-{n}-q", "type": "run.queued", "ts": _ts(at)}),
                  orjson.dumps({**ctx, "event_id": f"future-{n}-s", "type": "run.started", "ts": _ts(at)})]
    return lines


@pytest.fixture(scope="module")
def own(tmp_path_factory, run_prefix):
    with own_stack(tmp_path_factory, run_prefix, "hw") as stack_and_reader:
        yield stack_and_reader


@pytest.fixture(scope="module")
def stack(own):
    return own[0]


@pytest.fixture(scope="module")
def reader(own):
    return own[1]


@pytest.fixture(scope="module")
def workload() -> list[bytes]:
    config = WorkloadConfig(seed=23, accounts=3, backfill_runs_per_hour=5000,
                            spikes=(Spike(workflow="acme/wf-welcome", at=SPIKE_AT, rate=0.8,
                                          minutes=SPIKE_MINUTES.total_seconds() / 60),))
    return list(perturb(generate(config, START, END), seed=23, duplicate_rate=0.03, reorder_rate=0.03,
                        late_rate=0.01, bad_line_rate=0.005))


class ReadPathAttacker(threading.Thread):
    """An authenticated reader that keeps trying to write a file and read the host's files."""

    def __init__(self, reader_dsn: str, canary: Path):
        super().__init__(daemon=True)
        url = urlsplit(reader_dsn)
        self.address = (url.hostname, url.port)
        self.auth = "Basic " + b64encode(f"{url.username}:{url.password}".encode()).decode()
        self.attacks = [f"SELECT * FROM runs INTO OUTFILE '{canary / 'outfile.csv'}' TRUNCATE",
                        f"SELECT 1 INTO OUTFILE '{canary / 'planted.sh'}'",
                        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
                        "SELECT file('/etc/passwd')",
                        f"INSERT INTO FUNCTION file('{canary / 'insert.csv'}', 'CSV') SELECT 1"]
        self.answers: list[tuple[int, bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.answers) < 500:
            for sql in self.attacks:
                connection = http.client.HTTPConnection(*self.address, timeout=30)
                try:
                    connection.request("POST", "/?" + urlencode({"query": sql}),
                                       headers={"Authorization": self.auth})
                    reply = connection.getresponse()
                    self.answers.append((reply.status, reply.read()))
                finally:
                    connection.close()
            self.stop.wait(0.2)


@pytest.fixture(scope="module")
def attacked(stack, workload, tmp_path_factory):
    """Publish the workload with hostile lines mixed in while the read path is attacked."""
    settings = stack.settings
    folder = tmp_path_factory.mktemp("hostile-workload")
    canary = folder / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("unchanged")
    before = {p.name: p.read_bytes() for p in canary.iterdir()}
    pid = stack.worker.pid

    hostile = list(_hostile("hostile-hw", "hw").values())
    future = _from_the_future("mallory-hw")
    mixed, step = list(future), max(1, len(workload) // (len(hostile) + 1))
    for n, line in enumerate(workload):
        mixed.append(line)
        if n % step == step - 1 and hostile:
            mixed.append(hostile.pop())
    mixed += hostile
    path = folder / "workload.ndjson"
    path.write_bytes(b"\n".join(mixed) + b"\n")

    attacker = ReadPathAttacker(stack.reader_dsn, canary)
    attacker.start()
    producer = Producer({"bootstrap.servers": stack.brokers, "message.max.bytes": 2_000_000})
    producer.produce(settings.events_topic, key=b"hw-raw", value=b"\n" * 1_000_000)       # a megabyte of nothing
    producer.produce(settings.events_topic, key=b"hw-raw", value=b"\n".join(future + [b"{"] * 3))
    producer.produce(settings.dead_letter_topic, value=b"planted",
                     headers=[("runlens.source_partition", b"abc"), ("runlens.source_offset", b"9" * 30)])
    assert producer.flush(60) == 0
    result = run_cli(settings, "publish", str(path))
    assert result.returncode == 0, result.stderr
    wait_caught_up(stack, timeout=300)
    attacker.stop.set()
    attacker.join(60)
    return {"pid": pid, "canary": canary, "before": before, "answers": attacker.answers, "path": path,
            "future": future}


def test_the_worker_never_restarted(stack, attacked):
    stack.supervise()
    assert stack.worker_restarts == 0
    assert stack.worker is not None and stack.worker.poll() is None and stack.worker.pid == attacked["pid"]


def test_runs_and_steps_equal_the_recomputation(attacked, workload, reader):
    truth = valid_events(workload)
    expected, actual = expected_runs(truth), actual_runs(reader, run_ids_mentioned(workload))
    assert len(expected) > 5_000
    assert len(actual) == len(expected) and diff(expected, actual) == []
    expected_s, actual_s = expected_steps(truth), actual_steps(reader, run_ids_mentioned(workload))
    assert len(actual_s) == len(expected_s) and diff(expected_s, actual_s) == []


def test_every_valid_event_is_stored_exactly_once(attacked, workload, reader):
    """One row per event once parts are merged (counting once is `run_stats`' test below)."""
    truth = {(e.account_id, e.event_id) for e in valid_events(workload)}
    rows = reader.query("SELECT account_id, event_id, count() FROM events FINAL "
                        "WHERE account_id IN {a:Array(String)} GROUP BY account_id, event_id",
                        parameters={"a": sorted({a for a, _ in truth})}).result_rows
    assert {(a, e) for a, e, _ in rows} == truth
    assert {n for *_, n in rows} == {1}


def test_run_stats_counts_equal_the_recomputation(attacked, workload, reader):
    truth = valid_events(workload)
    expected = {k: (v["finished"], v["succeeded"], v["failed"], v["stopped"], len(v["queue_waits"]))
                for k, v in expected_run_stats(truth).items()}
    rows = reader.query(f"SELECT {', '.join(RUN_KEY)}, finished, succeeded, failed, stopped, queue_samples "
                        "FROM run_stats WHERE account_id IN {a:Array(String)}",
                        parameters={"a": sorted({e.account_id for e in truth})}).result_rows
    actual = {tuple(r[:8]): tuple(r[8:]) for r in rows}
    assert sum(v[0] for v in expected.values()) > 5_000
    assert diff({k: {"counts": v} for k, v in expected.items()},
                {k: {"counts": v} for k, v in actual.items()}) == []


def test_the_failure_spike_is_still_alerted(attacked, reader):
    spikes = reader.query("SELECT started_at FROM alerts WHERE kind = 'failure_spike' AND account_id = 'acme' "
                          "AND subject = 'wf-welcome'").result_rows
    starts = sorted(started.replace(tzinfo=UTC) for (started,) in spikes)
    assert starts and SPIKE_AT <= starts[0] <= SPIKE_AT + DETECTION_BOUND, starts
    # at this volume the alert may resolve and fire again within the spike, never outside it
    assert starts[-1] <= SPIKE_AT + SPIKE_MINUTES + DETECTION_BOUND, starts


def test_hostile_and_future_lines_are_dead_lettered_with_a_reason(attacked, reader):
    rows = reader.query("SELECT reason, raw FROM rejected_events WHERE source = {s:String}",
                        parameters={"s": f"file:{attacked['path']}"}).result_rows
    raws = {raw.encode() for _, raw in rows}
    assert set(_hostile("hostile-hw", "hw").values()) <= raws
    assert set(attacked["future"]) <= raws
    assert all(reason for reason, _ in rows)
    assert reader.query("SELECT count() FROM runs WHERE account_id = 'mallory-hw'").result_rows == [(0,)]


def test_the_read_path_wrote_and_read_nothing_outside(attacked):
    canary = attacked["canary"]
    assert {p.name: p.read_bytes() for p in canary.iterdir()} == attacked["before"]
    answers = attacked["answers"]
    assert len(answers) >= 5
    assert all(status != 200 for status, _ in answers), [a for a in answers if a[0] == 200][:3]
    assert not any(b"root:" in body for _, body in answers)
