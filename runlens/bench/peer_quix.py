"""Peer yardstick P1: what a user would build instead of runlens, a quix-streams application.

The application (``child_main``, run in a virtualenv of its own: quixstreams 3.28 pins
confluent-kafka, pydantic and pydantic-settings below runlens' pins) consumes the multi-event
records of one topic, splits them into NDJSON lines, validates each line with runlens' contract
(``schemas.validation.decode_event``, the worker's hot path; an invalid line is counted and
skipped, not stored), maps it with ``sinks.rows`` (the worker's column mapping) and inserts into
``events`` of a warehouse process over ClickHouse HTTP with clickhouse-connect, through
quixstreams' batching sink API (``BatchingSink.write(SinkBatch)``, one insert per partition per
checkpoint; offsets are committed after the sink's flush). It stops once every line was inserted
or skipped and prints one JSON line: events, seconds from the first record to the last insert
acknowledged, CPU seconds over the same span (``time.process_time``: every thread of the
process), RSS.

The parent side (the bench) imports this module without quixstreams: only the standard library at
module level. The child is started as ``<peer venv>/bin/python -P <this file> '<json spec>'``
with the repository root on ``PYTHONPATH`` (for ``schemas`` and ``sinks.rows``).

Crash/retry: the venv is built in a temporary folder and renamed into place once pip succeeded,
so a half-built venv is never taken for a ready one. The application gives up (exit code 1, an
``error`` in its JSON line) after ``timeout_s``; the parent kills it if it outlives that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PEER_PACKAGES = ("quixstreams==3.28.1", "clickhouse-connect", "orjson", "msgspec")
"""What the peer venv holds: quixstreams and what runlens' ``schemas``/``sinks.rows`` import
(pydantic comes with quixstreams)."""

READY_MARKER = ".runlens-peer-ready"
REPO_ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = ("events", "rejected", "seconds", "cpu_s", "inserts")


@dataclass
class PeerSpec:
    """What the peer application is given: where to read, where to write, how much to expect."""

    brokers: str
    topic: str
    group: str
    dsn: str          # http://user:password@host:port of the warehouse process (its writer)
    database: str
    lines: int        # every line the topic holds: valid events + invalid lines
    timeout_s: float
    commit_interval_s: float = 1.0
    warm_lines: int = 0   # lines sent first: once they are inserted, the application prints {"warm": true}
                          # and times (and counts) only what follows


# --------------------------------------------------------------------------- parent side, pure


def peer_venv_dir() -> Path:
    """Where the peer venv lives: ``RUNLENS_PEER_VENV``, else a per-user cache folder named after
    the quixstreams version (one build serves every bench run and test)."""
    configured = os.environ.get("RUNLENS_PEER_VENV")
    if configured:
        return Path(configured)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "runlens" / f"peer-venv-{PEER_PACKAGES[0].replace('==', '-')}"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def venv_ready(venv: Path) -> bool:
    """The venv was built completely for the current package list."""
    marker = venv / READY_MARKER
    try:
        return venv_python(venv).exists() and marker.read_text() == "\n".join(PEER_PACKAGES)
    except OSError:
        return False


def skip_reason(quick: bool, ready: bool) -> str | None:
    """Whether P1 runs: a full bench always does (building the venv if needed, ~20-60 s of pip);
    a quick bench only when the venv is there already, so that CI's quick bench never waits on
    a registry."""
    if quick and not ready:
        return ("quick bench and no peer venv built yet (a full `runlens bench` builds it, in "
                f"{peer_venv_dir()}; or set RUNLENS_PEER_VENV)")
    return None


def parse_peer_result(stdout: str) -> dict[str, Any]:
    """The application's JSON line (its last line starting with ``{``). Raises ValueError when
    there is none, when it reports an error, or when a figure is missing or not a number."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise ValueError("the peer application printed no result line")
    try:
        doc = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"the peer application's result line is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ValueError("the peer application's result line is not an object")
    if doc.get("error"):
        raise ValueError(f"the peer application failed: {doc['error']}")
    for key in RESULT_KEYS:
        value = doc.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"the peer application's result has no valid {key!r}: {value!r}")
    if not doc["events"] or not doc["seconds"]:
        raise ValueError("the peer application stored no events")
    return doc


def p1_figures(doc: dict[str, Any], warehouse_cpu_s: float | None) -> dict[str, Any]:
    """Rates and CPU per million events of a parsed result (``parse_peer_result``)."""
    events = doc["events"]
    client = doc["cpu_s"] / events * 1e6
    warehouse = None if warehouse_cpu_s is None else warehouse_cpu_s / events * 1e6
    return {"events": events, "rejected": doc["rejected"], "seconds": round(doc["seconds"], 3),
            "events_per_s": round(events / doc["seconds"]), "inserts": doc["inserts"],
            "cpu_s_per_million": round(client, 2),
            "warehouse_cpu_s_per_million": None if warehouse is None else round(warehouse, 2),
            "total_cpu_s_per_million": None if warehouse is None else round(client + warehouse, 2),
            "rss_mb_peak": doc.get("rss_mb_peak"), "profile_s": doc.get("profile_s")}


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 3)


def peer_comparison(pipeline_run: dict[str, Any] | None, p1: dict[str, Any] | None) -> dict[str, Any]:
    """runlens (the pipeline's max-rate run) against P1 (its run timed as the pipeline's, when there
    is one; its pre-filled-topic run's ratio next to it): events/s ratio (> 1: runlens is ahead),
    CPU per million events of each (consumer + warehouse) and their ratio (< 1: runlens spends
    less), and a verdict in words."""
    if not p1 or p1.get("skipped") or not p1.get("events_per_s"):
        reason = (p1 or {}).get("skipped") or "P1 was not measured"
        return {"runlens_to_P1": None, "verdict": f"no comparison: {reason}"}
    if not pipeline_run or not pipeline_run.get("events_per_s"):
        return {"runlens_to_P1": None, "verdict": "no comparison: the pipeline measured no max-rate run"}
    prefilled = _ratio(pipeline_run["events_per_s"], p1["events_per_s"])
    live = p1.get("as_pipeline") or {}
    timed_alike = bool(live.get("events_per_s"))
    basis = live if timed_alike else p1
    rate = _ratio(pipeline_run["events_per_s"], basis["events_per_s"])
    workers, warehouse = pipeline_run.get("worker_cpu_s_per_million"), pipeline_run.get("warehouse_cpu_s_per_million")
    runlens_cpu = None if workers is None else workers + (warehouse or 0.0)
    peer_cpu = basis.get("total_cpu_s_per_million") or basis.get("cpu_s_per_million")
    cpu = _ratio(runlens_cpu, peer_cpu)
    if rate is None:
        verdict = "no comparison"
    elif rate >= 1.05:
        verdict = f"runlens wins: {rate:.2f}x P1's events/s"
    elif rate <= 0.95:
        verdict = f"P1 (quix-streams) wins: runlens does {rate:.2f}x its events/s"
    else:
        verdict = f"a tie: runlens does {rate:.2f}x P1's events/s"
    return {"runlens_to_P1": rate, "runlens_events_per_s": pipeline_run["events_per_s"],
            "P1_events_per_s": basis["events_per_s"],
            "basis": ("P1 timed as the pipeline (first send -> last insert, producer running)" if timed_alike
                      else "P1 on a pre-filled topic (first record -> last insert), as B2"),
            "runlens_to_P1_prefilled": prefilled,
            "runlens_cpu_s_per_million": None if runlens_cpu is None else round(runlens_cpu, 2),
            "P1_cpu_s_per_million": peer_cpu, "cpu_per_million_runlens_to_P1": cpu, "verdict": verdict}


# --------------------------------------------------------------------------- parent side, processes


def ensure_peer_venv(venv: Path, timeout_s: float = 600) -> str | None:
    """Build the peer venv unless it is ready. Returns None when it is ready, else why it could not
    be built (pip's last words): the bench records P1 as skipped with that reason."""
    if venv_ready(venv):
        return None
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    deadline = time.monotonic() + timeout_s
    try:
        for command in ([sys.executable, "-m", "venv", str(building)],
                        [str(venv_python(building)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                         *PEER_PACKAGES]):
            done = subprocess.run(command, capture_output=True, timeout=max(1.0, deadline - time.monotonic()),
                                  check=False)
            if done.returncode != 0:
                tail = [line for line in done.stderr.decode(errors="replace").splitlines()
                        if line.strip() and not line.startswith("WARNING: Location")][-2:]
                return f"could not build the peer venv ({command[2]}): {' '.join(tail)[:300] or done.returncode}"
        (building / READY_MARKER).write_text("\n".join(PEER_PACKAGES))
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        building.rename(venv)
    except subprocess.TimeoutExpired:
        return f"building the peer venv took more than {timeout_s:.0f}s"
    except OSError as exc:
        return f"could not build the peer venv: {exc}"
    finally:
        shutil.rmtree(building, ignore_errors=True)
    # a venv's scripts hold its path: the renamed venv's python still runs (bin/python is a link)
    return None if venv_ready(venv) else "the peer venv was built but is not usable"


def run_peer(venv: Path, spec: PeerSpec) -> tuple[dict[str, Any], str]:
    """Run the peer application to the end; returns its parsed result and its stderr's tail.
    Raises ValueError (``parse_peer_result``) or subprocess.TimeoutExpired."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("PYTHONHOME", None)
    done = subprocess.run([str(venv_python(venv)), "-P", str(Path(__file__).resolve()), json.dumps(asdict(spec))],
                          capture_output=True, env=env, timeout=spec.timeout_s + 60, check=False,
                          cwd=str(Path.cwd()))
    stderr = done.stderr.decode(errors="replace")
    try:
        return parse_peer_result(done.stdout.decode(errors="replace")), stderr[-2000:]
    except ValueError as exc:
        raise ValueError(f"{exc} (exit code {done.returncode}; stderr: {stderr[-600:].strip()})") from exc


def run_peer_live(venv: Path, spec: PeerSpec, warm_up: Callable[[], None], send: Callable[[], float],
                  ready_timeout_s: float = 120) -> dict[str, Any]:
    """The peer application running while the events are produced, timed as the pipeline is:
    start it, ``warm_up()`` (sends ``spec.warm_lines`` lines), wait until it inserted them, then
    ``send()`` (produces the events, returns the monotonic time of its first send). Returns the
    parsed result with ``seconds`` replaced by first send -> last insert acknowledged.
    Raises ValueError or TimeoutError; the application is killed if it is still running."""
    import queue
    import threading

    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("PYTHONHOME", None)
    proc = subprocess.Popen([str(venv_python(venv)), "-P", str(Path(__file__).resolve()), json.dumps(asdict(spec))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[bytes] = []

    def pump_stdout() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode(errors="replace"))
        lines.put(None)

    def pump_stderr() -> None:
        assert proc.stderr is not None
        stderr.append(proc.stderr.read())

    threads = [threading.Thread(target=pump_stdout, daemon=True), threading.Thread(target=pump_stderr, daemon=True)]
    for thread in threads:
        thread.start()
    out: list[str] = []
    try:
        warm_up()
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError(f"the peer application did not take the warm-up within {ready_timeout_s:.0f}s") \
                    from None
            if line is None:
                break
            out.append(line)
            if line.startswith('{"warm"'):
                break
        t_first_send = send()
        proc.wait(timeout=spec.timeout_s + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for thread in threads:
            thread.join(timeout=10)
    while not lines.empty():
        line = lines.get()
        if line is not None:
            out.append(line)
    try:
        doc = parse_peer_result("".join(line for line in out if not line.startswith('{"warm"')))
    except ValueError as exc:
        tail = b"".join(stderr).decode(errors="replace")[-600:].strip()
        raise ValueError(f"{exc} (exit code {proc.returncode}; stderr: {tail})") from exc
    end = doc.get("t_end_monotonic")
    if not isinstance(end, int | float) or end <= t_first_send:
        raise ValueError(f"the peer application's end time {end!r} is not after the first send")
    doc["seconds"] = end - t_first_send
    return doc


# --------------------------------------------------------------------------- the peer application


def child_main(argv: list[str]) -> int:  # pragma: no cover - runs in the peer venv, exercised by the integration test
    """The quix-streams application. Prints one JSON line; exit code 0 when every line was handled."""
    import resource
    import threading
    from datetime import UTC, datetime, timedelta

    import clickhouse_connect
    from quixstreams import Application  # type: ignore[import-not-found, unused-ignore]
    from quixstreams.sinks import BatchingSink, SinkBatch  # type: ignore[import-not-found, unused-ignore]

    from schemas.validation import MAX_CLOCK_SKEW_SECONDS, Rejection, decode_event
    from sinks.rows import EVENT_COLUMNS, SourcedEvent, event_columns, event_values

    spec = PeerSpec(**json.loads(argv[1]))
    state: dict[str, Any] = {"t0": None, "cpu0": 0.0, "t_end": None, "cpu_end": 0.0, "events": 0,
                             "rejected": 0, "inserts": 0, "error": None, "split_s": 0.0, "insert_s": 0.0,
                             "write_s": 0.0, "warm": False, "warm_handled": 0, "warm_events": 0}
    skew = timedelta(seconds=MAX_CLOCK_SKEW_SECONDS)
    names = list(EVENT_COLUMNS)
    app = Application(broker_address=spec.brokers, consumer_group=spec.group, auto_offset_reset="earliest",
                      commit_interval=spec.commit_interval_s, loglevel="WARNING", use_changelog_topics=False,
                      auto_create_topics=False)

    def split(value: bytes) -> list[tuple[int, Any, tuple[Any, ...]]]:
        """One record -> its valid events (line number, event, column values); invalid lines counted."""
        started = time.perf_counter()
        if state["t0"] is None:
            state["t0"], state["cpu0"] = started, time.process_time()
        not_after = datetime.now(UTC) + skew
        out: list[tuple[int, Any, tuple[Any, ...]]] = []
        for line_no, line in enumerate(value.split(b"\n")):
            if not line.strip():
                continue
            event = decode_event(line, not_after=not_after)
            if type(event) is Rejection:
                state["rejected"] += 1
                continue
            try:
                out.append((line_no, event, event_values(event)))
            except Exception:  # noqa: BLE001 - a line whose values cannot be serialized: skipped, as invalid
                state["rejected"] += 1
        state["split_s"] += time.perf_counter() - started
        return out

    class WarehouseSink(BatchingSink):  # type: ignore[misc, unused-ignore]
        def setup(self) -> None:
            self.client = clickhouse_connect.get_client(dsn=spec.dsn, database=spec.database, compress=False,
                                                        connect_timeout=5, send_receive_timeout=120,
                                                        autogenerate_session_id=False)

        def write(self, batch: SinkBatch) -> None:
            started = time.perf_counter()
            items = [SourcedEvent(event, batch.partition, item.offset, line, values)
                     for item in batch for line, event, values in (item.value,)]
            if not items:
                return
            columns = event_columns(items)
            inserting = time.perf_counter()
            self.client.insert("events", [columns[name] for name in names], column_names=names,
                               column_oriented=True)
            state["events"] += len(items)
            state["inserts"] += 1
            if spec.warm_lines and not state["warm"] and state["events"] + state["rejected"] >= spec.warm_lines:
                state["warm"], state["t0"] = True, None   # timing starts with the next record
                state["warm_handled"] = state["events"] + state["rejected"]
                state["warm_events"] = state["events"]
                print(json.dumps({"warm": True}), flush=True)
            done = time.perf_counter()
            state["insert_s"] += done - inserting
            state["write_s"] += done - started
            if state["events"] + state["rejected"] >= spec.lines:
                state["t_end"], state["cpu_end"] = time.perf_counter(), time.process_time()
                app.stop()

    topic = app.topic(spec.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)
    sdf = sdf.apply(split, expand=True)
    sdf.sink(WarehouseSink())

    def give_up() -> None:
        state["error"] = f"timed out after {spec.timeout_s:.0f}s with {state['events'] + state['rejected']:,} " \
                         f"of {spec.lines:,} lines handled"
        app.stop()

    timer = threading.Timer(spec.timeout_s, give_up)
    timer.daemon = True
    timer.start()
    try:
        app.run()
    except Exception as exc:  # noqa: BLE001 - reported in the result line
        state["error"] = f"{type(exc).__name__}: {exc}"[:500]
    timer.cancel()
    if state["error"] is None and (state["t_end"] is None or state["t0"] is None):
        state["error"] = f"stopped with {state['events'] + state['rejected']:,} of {spec.lines:,} lines handled"
    result: dict[str, Any] = {"events": state["events"] - state["warm_events"],
                              "rejected": state["rejected"] - (state["warm_handled"] - state["warm_events"]),
                              "inserts": state["inserts"],
                              "rss_mb_peak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if state["error"]:
        result["error"] = state["error"]
    else:
        result["seconds"] = state["t_end"] - state["t0"]
        result["t_end_monotonic"] = state["t_end"]   # CLOCK_MONOTONIC: the parent's clock too (Linux)
        result["cpu_s"] = state["cpu_end"] - state["cpu0"]
        # where the wall time went: validating + mapping lines, the sink's write (columns + insert),
        # the insert's round trip alone; the rest is quixstreams' own (polling, per-row dataframe
        # steps, checkpoints and commits)
        result["profile_s"] = {name: round(state[name], 3) for name in ("split_s", "write_s", "insert_s")}
    print(json.dumps(result), flush=True)
    return 1 if state["error"] else 0


if __name__ == "__main__":  # pragma: no cover - the peer venv's entry point
    sys.exit(child_main(sys.argv))
