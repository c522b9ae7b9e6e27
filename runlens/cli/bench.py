"""`runlens bench`: its options and the command; the benchmark itself is ``runlens.bench``."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import TracebackType
from typing import Annotated

import orjson
import typer

from runlens.bench import PRODUCERS, Bench, Plan, render_chart, render_markdown
from runlens.cli.common import (
    BadArgument,
    UserError,
    parse_duration_option,
    path_value,
    settings_of,
    shown,
    stop_on_signals,
)

# --------------------------------------------------------------------------- arguments

_COUNT = re.compile(r"^\s*([0-9]{1,12}(?:\.[0-9]{1,6})?)\s*([kKmM]?)\s*$", re.ASCII)
_MULT = {"": 1, "k": 1_000, "m": 1_000_000}
MAX_EVENTS = 100_000_000


def parse_count(text: str, option: str, minimum: int = 1000) -> int:
    """'200k', '1m', '10m' or a plain number of events (ASCII digits, up to 100m)."""
    match = _COUNT.match(text)
    if not match:
        raise BadArgument(f"{option}: invalid event count {shown(text)} (use e.g. 200k, 1m, 10m)")
    value = int(float(match.group(1)) * _MULT[match.group(2).lower()])
    if value < minimum:
        raise BadArgument(f"{option}: {text.strip()!r} is too small (at least {minimum:,} events)")
    if value > MAX_EVENTS:
        raise BadArgument(f"{option}: {text.strip()!r} is too large (at most {MAX_EVENTS:,} events)")
    return value


def parse_history(text: str) -> list[int]:
    if text.strip().lower() in ("0", "none", "off", ""):
        return []
    sizes = sorted({parse_count(part, "--history") for part in text.split(",") if part.strip()})
    if not sizes:
        raise BadArgument(f"--history: no sizes in {shown(text)} (use e.g. 1m,10m)")
    return sizes


def parse_rates(text: str) -> list[float]:
    rates = []
    for part in text.split(","):
        try:
            if not part.isascii():
                raise ValueError(part)
            value = float(part.strip().rstrip("%"))
        except ValueError:
            raise BadArgument(f"--rates: invalid percentage {shown(part.strip())} (use e.g. 25,50,80)") from None
        if not 0 < value <= 100:
            raise BadArgument(f"--rates: {shown(part.strip())} is not a percentage of the maximum in (0, 100]")
        rates.append(value)
    return rates


def parse_seconds(text: str, option: str, allow_zero: bool) -> float:
    """A duration option in seconds (``parse_duration_option``); above 0 unless ``allow_zero``."""
    seconds = parse_duration_option(text, option).total_seconds()
    if seconds <= 0 and not allow_zero:
        raise BadArgument(f"{option}: must be longer than 0")
    return seconds


# --------------------------------------------------------------------------- the command


class _embedded_only:
    """The bench always runs its own embedded stacks. EmbeddedStack hands the worker this
    process's environment, so addresses a user exported (RUNLENS_WAREHOUSE_DSN, ...) would
    reach the bench's workers: hide them while the bench runs."""

    _NAMES = ("RUNLENS_BROKERS", "RUNLENS_WAREHOUSE_DSN", "RUNLENS_QUERY_URL", "RUNLENS_WAREHOUSE_PASSWORD",
              "RUNLENS_ALERT_WEBHOOK_URL", "RUNLENS_READ_PORT", "RUNLENS_BROKER_PORT", "RUNLENS_DATA_DIR",
              "RUNLENS_TOPIC_PREFIX", "RUNLENS_DATABASE", "RUNLENS_WAREHOUSE_PORT", "RUNLENS_READ_PASSWORD",
              "RUNLENS_WRITE_PASSWORD")

    def __enter__(self) -> _embedded_only:
        names = [name for name in os.environ if name in self._NAMES or name.startswith("RUNLENS_FAULT_")]
        self._saved = {name: os.environ.pop(name) for name in names}
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        os.environ.update(self._saved)


def bench_command(
    ctx: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="A short version (a minute or two): 100k events, "
                                                          "5 s per rate, 15 s soak, 100k history, 3 runs "
                                                          "per query.")] = False,
    out_path: Annotated[str, typer.Option("--out", help="Results folder; each run writes <out>/<timestamp>/.",
                                          callback=path_value)] = "results",
    events: Annotated[str | None, typer.Option(help="Events for the baselines and the max-rate run "
                                                       "(default 1m; quick 100k).")] = None,
    rates: Annotated[str, typer.Option(help="Fixed rates for latency, in % of the measured maximum.")] = "25,50,80",
    latency_duration: Annotated[str | None, typer.Option(
        "--latency-duration", help="Traffic per fixed rate (default 60s; quick 5s).")] = None,
    soak: Annotated[str | None, typer.Option(help="Soak at 50% of max: e.g. 10m; 0 skips "
                                                     "(default 10m; quick 15s).")] = None,
    history: Annotated[str | None, typer.Option(help="History sizes for query speed, e.g. 1m,10m; 0 skips "
                                                        "(default 1m,10m; quick 100k).")] = None,
    repeat: Annotated[int | None, typer.Option(min=1, max=1000, help="Timed runs per query, 1..1000 "
                                                                      "(default 10; quick 3).")] = None,
    seed: Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Workload seed (0..2^63-1).")] = 7,
    producer: Annotated[str, typer.Option(
        help="Producer path for the max-rate, fixed-rate and soak runs: emitter (multi-event records with a "
             "linger, as RunEmitter sends), single (one record per event) or sink (EventSink, as publish/simulate "
             "send). The max-rate run is also measured with the others.")] = "emitter",
    workers: Annotated[int | None, typer.Option(
        min=1, max=32, help="Stream workers of the pipeline phase, 1..32 (default: RUNLENS_WORKERS, else 1). Its "
                            "max-rate run is also measured on a stack of 2 workers (of 1 when this is not 1), side "
                            "by side.")] = None,
    keep_scratch: Annotated[bool, typer.Option("--keep-scratch", help="Keep the phases' data directories.")] = False,
) -> None:
    """Benchmark the embedded pipeline: throughput, latency, memory, query speed, against bare loops."""
    out = Path(out_path)
    plan = Plan(
        quick=quick, out=out,
        events=parse_count(events or ("100k" if quick else "1m"), "--events"),
        rates=parse_rates(rates),
        latency_s=parse_seconds(latency_duration or ("5s" if quick else "60s"), "--latency-duration", False),
        soak_s=parse_seconds(soak or ("15s" if quick else "10m"), "--soak", True),
        history=parse_history(history or ("100k" if quick else "1m,10m")),
        repeat=repeat or (3 if quick else 10),
        seed=seed, producer=producer.strip().lower(), keep_scratch=keep_scratch, workers=workers,
    )
    if plan.producer not in PRODUCERS:
        raise BadArgument(f"--producer: unknown producer path {shown(producer)} (emitter, single or sink)")
    base = settings_of(ctx)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is not a folder")
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    with stop_on_signals(), _embedded_only(), progress:
        bench = Bench(plan, base, progress, console)
        result = bench.run()
    folder = bench.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    markdown = render_markdown(result)
    (folder / "bench.md").write_text(markdown + "\n")
    try:
        render_chart(result, folder / "bench.png")
    except Exception as exc:  # noqa: BLE001 - the figures are in the JSON and markdown already
        result["errors"].append({"phase": "chart", "error": f"{type(exc).__name__}: {exc}"})
        (folder / "bench.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.write(markdown + "\n")
    sys.stdout.write(f"\nresults: {folder}\n")
    if result["errors"]:
        phases = ", ".join(sorted({e["phase"] for e in result["errors"]}))
        raise UserError(f"bench finished with errors in: {phases} (see {folder / 'bench.json'})")
