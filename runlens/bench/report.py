"""The bench's results as markdown (bench.md) and a chart (bench.png)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)



def _client_and_warehouse_cpu(figures: dict[str, Any]) -> str:
    """CPU seconds per million events of a client and, when measured, of the warehouse it wrote to."""
    cpu = f"{_fmt(figures.get('cpu_s_per_million'), 2)} (client)"
    if figures.get("warehouse_cpu_s_per_million") is not None:
        cpu += f" + {_fmt(figures['warehouse_cpu_s_per_million'], 2)} (warehouse)"
    return cpu

def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


_BASELINES = ("B0", "B1", "B2", "B2_in_process")


def _ratios(ratio_to: dict[str, float | None] | None) -> str:
    ratio_to = ratio_to or {}
    return " / ".join(f"{_x(ratio_to.get(n))} {n.replace('_', ' ')}" for n in _BASELINES if n in ratio_to)


def _cpu(run: dict[str, Any]) -> str:
    """A run's CPU s / M events: its workers', and the warehouse process's when measured."""
    text = f"{_fmt(run.get('worker_cpu_s_per_million'), 2)} (worker{'s' if (run.get('workers') or 1) > 1 else ''})"
    if run.get("warehouse_cpu_s_per_million") is not None:
        text += f" + {_fmt(run['warehouse_cpu_s_per_million'], 2)} (warehouse)"
    return text


def _rss_list(values: list[float | None] | None) -> str:
    return " + ".join(_fmt(v, 0) for v in values) if values else "–"


def _peer_sentence(p1: dict[str, Any], peer: dict[str, Any]) -> str:
    """runlens against the peer yardstick P1, in words: who wins, by how much, at what CPU."""
    if p1.get("skipped") or p1.get("error"):
        return f"Peer yardstick P1 (quix-streams) not measured: {p1.get('skipped') or p1.get('error')}."
    text = (f"Peer yardstick P1 (quix-streams): {peer.get('verdict', 'no comparison')} "
            f"(runlens {_fmt(peer.get('runlens_events_per_s'))} events/s ÷ P1 {_fmt(peer.get('P1_events_per_s'))} "
            f"= {_x(peer.get('runlens_to_P1'))}; CPU s / M events, consumer + warehouse: runlens "
            f"{_fmt(peer.get('runlens_cpu_s_per_million'), 2)}, P1 {_fmt(peer.get('P1_cpu_s_per_million'), 2)}, "
            f"= {_x(peer.get('cpu_per_million_runlens_to_P1'))}; basis: {peer.get('basis', '–')}; on the pre-filled "
            f"topic runlens ÷ P1 = {_x(peer.get('runlens_to_P1_prefilled'))}). P1 ran after B2 on B2's broker and "
            "warehouse process; it validates with the same contract and maps with the same code, but keeps no "
            "ledger (no dedup of redelivered events), sends no dedup token, stores no dead letters, runs no "
            "detectors and writes no pipeline metrics.")
    return text


def _workers_section(result: dict[str, Any]) -> list[str]:
    side = result.get("pipeline", {}).get("workers_side_by_side") or {}
    if not side:
        return []
    base = result.get("baselines", {})
    lines = ["## Workers side by side", "",
             f"The max-rate run of the **bold** producer path, the same {_fmt(next(iter(side.values()))['events'])} "
             "events (under fresh ids), on the pipeline phase's stack and on a stack of its own with the other "
             "number of workers (warmed up the same way, every worker holding partitions). RSS after the run, "
             "each worker's and the warehouse process's.", "",
             "| workers | events/s | ÷ B2 | ÷ B2 in process | worker RSS (MiB, each) | warehouse RSS (MiB) | "
             "CPU s / M events |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for n, row in side.items():
        lines.append(f"| {n} | {_fmt(row.get('events_per_s'))} | {_x(row.get('ratio_to_B2'))} | "
                     f"{_x(row.get('ratio_to_B2_in_process'))} | {_rss_list(row.get('workers_rss_mb_after'))} | "
                     f"{_fmt(row.get('warehouse_rss_mb_after'), 0)} | "
                     f"{_cpu({**row, 'workers': int(n)})} |")
    two_to_one = result.get("pipeline", {}).get("workers_2_to_1")
    b2 = base.get("B2") or {}
    lines += ["", f"2 workers ÷ 1 worker: {_x(two_to_one)} (B2: {_fmt(b2.get('events_per_s'))} events/s, "
                  f"B2 in process: {_fmt((base.get('B2_in_process') or {}).get('events_per_s'))} events/s).", ""]
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    opts = result.get("options", {})
    lines = [f"# runlens bench — {result.get('started_at', '')}", ""]
    lines.append(f"Machine: {m.get('cpus')} CPUs ({m.get('cpu_model')}), {m.get('ram_gib')} GiB RAM, "
                 f"Python {m.get('python')}, {m.get('platform')}. "
                 + ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()) + ".")
    w = result.get("workload", {})
    lines.append(f"Workload: {_fmt(w.get('events'))} events of {_fmt(w.get('avg_event_bytes'), 0)} bytes on average, "
                 f"{w.get('partitions')} partitions, worker settings "
                 + ", ".join(f"{k}={v}" for k, v in (w.get("worker_settings") or {}).items())
                 + f"; {result.get('pipeline', {}).get('workers') or opts.get('workers') or 1} worker(s) in the "
                 f"pipeline phase; mode {'quick' if opts.get('quick') else 'full'}, producer "
                 f"{opts.get('producer')}; total {result.get('seconds')} s ("
                 + ", ".join(f"{k} {v} s" for k, v in (result.get("phase_seconds") or {}).items()) + "); "
                 f"the bench process's own peak RSS {_fmt(result.get('bench_process_rss_mb_peak'), 0)} MiB.")
    lines.append("")
    base = result.get("baselines", {})
    tp = result.get("pipeline", {}).get("throughput", {})
    lines += ["## Throughput", "",
              "The fixed-rate runs below use the **bold** pipeline figure as the maximum. B2 is the yardstick of "
              "the current shape (the consumer inserts into a warehouse process over HTTP); B2 in process is the "
              "old shape (chDB inside the consumer), measured the same way.", "",
              "| measure | events | seconds | events/s | CPU s / M events | pipeline (bold) ÷ this |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, title in (("B0", "B0 bare produce"), ("B1", "B1 bare consume (count)"),
                        ("B2", "B2 bare consume + decode + insert into a warehouse process over HTTP"),
                        ("B2_in_process", "B2 in process: the same loop into chDB inside the consumer (old shape)")):
        b = base.get(name)
        if b:
            cpu = _fmt(b.get("cpu_s_per_million"), 2)
            if b.get("warehouse_cpu_s_per_million") is not None:
                cpu = f"{cpu} (client) + {_fmt(b['warehouse_cpu_s_per_million'], 2)} (warehouse)"
            lines.append(f"| {title} | {_fmt(b['events'])} | {b['seconds']:.2f} | {_fmt(b['events_per_s'])} | "
                         f"{cpu} | {_x(tp.get('ratio_to', {}).get(name))} |")
    p1, peer = base.get("P1") or {}, result.get("peer") or {}
    if p1.get("events_per_s"):
        cpu = _client_and_warehouse_cpu(p1)
        lines.append(f"| P1 peer: a quix-streams application (BatchingSink) splitting the same events' multi-event "
                     f"records ({_fmt(p1.get('records'))} records), validating each line with the contract and "
                     f"inserting into the same warehouse process | {_fmt(p1['events'])} | {p1['seconds']:.2f} | "
                     f"{_fmt(p1['events_per_s'])} | {cpu} | {_x(peer.get('runlens_to_P1_prefilled'))} |")
        live = p1.get("as_pipeline") or {}
        if live.get("events_per_s"):
            cpu = _client_and_warehouse_cpu(live)
            lines.append(f"| P1 peer timed as the pipeline: running while the events are produced (emitter path), "
                         f"first send -> last insert | {_fmt(live['events'])} | {live['seconds']:.2f} | "
                         f"{_fmt(live['events_per_s'])} | {cpu} | {_x(peer.get('runlens_to_P1'))} |")
    by_producer = result.get("pipeline", {}).get("throughput_by_producer") or ({"": tp} if tp else {})
    for mode, run in by_producer.items():
        title = {"emitter": "RunEmitter (multi-event records, 20 ms linger)",
                 "sink": "EventSink, as publish/simulate send",
                 "single": "one record per event, as RunEmitter(one_record_per_event=True) sends"}.get(mode, mode)
        bold = "**" if run.get("producer") == tp.get("producer") else ""
        lines.append(f"| {bold}pipeline{bold}: {title} ({_fmt(run.get('records'))} records), until lag 0 | "
                     f"{_fmt(run['events'])} | {run['seconds']:.2f} | {bold}{_fmt(run['events_per_s'])}{bold} | "
                     f"{_cpu(run)} | {_ratios(run.get('ratio_to'))} |")
    poison = result.get("pipeline", {}).get("poison")
    if poison:
        lines.append(f"| pipeline with 1 % poison lines ({_fmt(poison['bad_lines'])} bad lines of every kind the "
                     f"contract rejects, all dead-lettered), EventSink, valid events until lag 0 | "
                     f"{_fmt(poison['valid_events'])} | {poison['seconds']:.2f} | "
                     f"{_fmt(poison['valid_events_per_s'])} | "
                     f"{_cpu(poison)} | "
                     f"{_x(poison.get('ratio_to_clean_run'))} the clean EventSink run |")
    lines.append("")
    b2, b2_in = base.get("B2") or {}, base.get("B2_in_process") or {}
    if b2:
        lines.append(f"B2 (warehouse process over HTTP) ÷ B2 in process: "
                     f"{_x(_ratio(b2.get('events_per_s'), b2_in.get('events_per_s')))}. The warehouse process of B2 "
                     f"held {_fmt(b2.get('warehouse_rss_mb_idle'), 0)} MiB RSS idle, "
                     f"{_fmt(b2.get('warehouse_rss_mb_after'), 0)} MiB after B2 (peak "
                     f"{_fmt(b2.get('warehouse_rss_mb_peak'), 0)} MiB).")
        lines.append("")
    if p1 or peer:
        lines.append(_peer_sentence(p1, peer))
        lines.append("")
    lines += _workers_section(result)
    lat = result.get("pipeline", {}).get("latency", [])
    if lat:
        lines += ["## Event → queryable latency (ms)", "",
                  "| rate | events/s (achieved) | probes | Kafka hop p50 | p99 | `runs` p50 | p95 | p99 | "
                  "`run_stats` p50 | p95 | p99 | `runs` p50 ÷ hop p50 | worker CPU s / M | worker cores |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in lat:
            r, s, h = row["runs_view"], row["run_stats"], row.get("kafka_hop") or {}
            lines.append(f"| {row['target_pct_of_max']:g}% of max | {_fmt(row['target_events_per_s'])} "
                         f"({_fmt(row['achieved_events_per_s'])}) | {row['probes']} | {_fmt(h.get('p50_ms'))} | "
                         f"{_fmt(h.get('p99_ms'))} | {_fmt(r['p50_ms'])} | "
                         f"{_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(s['p50_ms'])} | {_fmt(s['p95_ms'])} | "
                         f"{_fmt(s['p99_ms'])} | {_x(row.get('runs_p50_ratio_to_kafka_hop'))} | "
                         f"{_fmt(row.get('worker_cpu_s_per_million'), 2)} | "
                         f"{_fmt(row.get('worker_cores'), 2)} |")
        overhead = result.get("pipeline", {}).get("probe_overhead") or {}
        lines.append(f"\nProbes: run.finished events, stamped when handed to the producer, seen at the start of the "
                     f"first poll that finds them (every {lat[0]['poll_interval_ms']} ms); the producer pushes every "
                     f"{lat[0].get('producer_push_every_ms', 5)} ms. Missing probes (runs/run_stats): "
                     + ", ".join(f"{row['runs_view']['missing']}/{row['run_stats']['missing']}" for row in lat)
                     + f". The poller alone costs the worker {_fmt(overhead.get('worker_cores'), 2)} cores "
                     f"(runs query p50 {_fmt(overhead.get('runs_query_ms_p50'), 1)} ms, run_stats query p50 "
                     f"{_fmt(overhead.get('run_stats_query_ms_p50'), 1)} ms).")
        lines.append("")
    res = result.get("resources", {})
    if res:
        soak = res.get("soak") or {}
        lines += ["## Resources (worker and warehouse processes)", "",
                  "Worker figures are the first worker's; with more workers, each worker's RSS is in the "
                  "workers section and CPU is all workers together.", "", "| measure | value |", "|---|---:|",
                  f"| RSS idle after warm-up | {_fmt(res.get('worker_rss_mb_idle'), 0)} MiB |",
                  f"| RSS after the max-rate run | {_fmt(res.get('worker_rss_mb_after_throughput'), 0)} MiB |",
                  f"| RSS at steady state ({res.get('steady_state_from')}) | "
                  f"{_fmt(res.get('worker_rss_mb_steady'), 0)} MiB |",
                  f"| peak RSS (VmHWM) up to the end of the soak | {_fmt(res.get('worker_rss_mb_peak'), 0)} MiB |"]
        for key, value in res.items():
            match = re.match(r"worker_rss_mb_(peak_)?after_(\w+)_max_rate_run$", key)
            if match:
                what = "peak RSS (VmHWM)" if match.group(1) else "RSS"
                lines.append(f"| {what} after the {match.group(2)} producer's max-rate run (last) | "
                             f"{_fmt(value, 0)} MiB |")
        rss_ratio = res.get("warehouse_rss_ratio_to_B2") or {}
        lines += [
                  f"| CPU s per million events at max rate | {_fmt(res.get('worker_cpu_s_per_million_at_max'), 2)} "
                  f"({_x(res.get('cpu_per_million_ratio_to_B2'))} B2's client, "
                  f"{_x(res.get('cpu_per_million_ratio_to_P1'))} P1's consumer) |",
                  f"| warehouse process: RSS idle after warm-up | {_fmt(res.get('warehouse_rss_mb_idle'), 0)} MiB "
                  f"({_x(rss_ratio.get('idle'))} after B2) |",
                  f"| warehouse process: RSS after the max-rate run | "
                  f"{_fmt(res.get('warehouse_rss_mb_after_throughput'), 0)} MiB "
                  f"({_x(rss_ratio.get('after_throughput'))} after B2) |",
                  f"| warehouse process: RSS at the end of the phase | {_fmt(res.get('warehouse_rss_mb_end'), 0)} MiB "
                  f"({_x(rss_ratio.get('end'))} after B2) |",
                  f"| warehouse process: peak RSS (VmHWM) at the end of the phase | "
                  f"{_fmt(res.get('warehouse_rss_mb_peak'), 0)} MiB ({_x(rss_ratio.get('peak'))} after B2) |",
                  f"| warehouse process: CPU s per million events at max rate | "
                  f"{_fmt(res.get('warehouse_cpu_s_per_million_at_max'), 2)} "
                  f"({_x(res.get('warehouse_cpu_per_million_ratio_to_B2'))} B2's warehouse) |",
                  f"| worker + warehouse: CPU s per million events at max rate | "
                  f"{_fmt(res.get('pipeline_cpu_s_per_million_at_max'), 2)} "
                  f"({_x(res.get('pipeline_cpu_per_million_ratio_to_B2'))} B2's client + warehouse) |"]
        if soak:
            slope = (f"; {_fmt(soak['growth_mb_per_min_second_half'], 2)} MiB/min over the second half"
                     if soak["seconds"] >= 120 else "")
            lines += [f"| soak: {soak['seconds']:g} s at {_fmt(soak['achieved_events_per_s'])} events/s | "
                      f"RSS {_fmt(soak['rss_mb_start'], 0)} → {_fmt(soak['rss_mb_end'], 0)} MiB "
                      f"({_fmt(soak['growth_mb'], 1)} MiB{slope}) |",
                      f"| soak: CPU s per million events | {_fmt(soak.get('worker_cpu_s_per_million'), 2)} |"]
        lines.append("")
    q = result.get("queries", {})
    sizes = q.get("sizes", [])
    if sizes:
        labels = [s["label"] for s in sizes]
        lines += [f"## Query speed (ms, {q.get('repeat')} timed runs each, through the read endpoint)", "",
                  "History: " + "; ".join(f"{s['label']}: {_fmt(s['events_stored'])} events, {_fmt(s['runs'])} runs "
                                          f"(backfilled through the pipeline at "
                                          f"{_fmt(s['backfill'].get('events_per_s'))} events/s; worker peak RSS "
                                          f"{_fmt(s['backfill'].get('worker_rss_mb_peak'), 0)} MiB)"
                                          for s in sizes) + ".", ""]
        head = "| query | " + " | ".join(f"{lab} p50 | {lab} p95" for lab in labels)
        head += " | growth p50 |" if len(sizes) > 1 else " |"
        lines.append(head)
        lines.append("|---|" + "---:|" * (2 * len(labels) + (1 if len(sizes) > 1 else 0)))
        growth = {(g["kind"], g["name"]): g for g in q.get("growth", [])}
        for i, entry in enumerate(sizes[0]["queries"]):
            key = (entry["kind"], entry["name"])
            cells = []
            for s in sizes:
                e = s["queries"][i] if i < len(s["queries"]) else {}
                if "error" in e:
                    cells += ["error", ""]
                else:
                    cells += [_fmt(e.get("p50_ms"), 1), _fmt(e.get("p95_ms"), 1)]
            row = f"| {entry['kind']}: {entry['name']} | " + " | ".join(cells)
            row += f" | {_x(growth.get(key, {}).get('p50_ratio'))} |" if len(sizes) > 1 else " |"
            lines.append(row)
        failed = [(s["label"], e["name"], e["error"]) for s in sizes for e in s["queries"] if "error" in e]
        if failed:
            lines.append("")
            lines += [f"- {lab} {name}: {err}" for lab, name, err in failed[:20]]
        lines.append("")
    if result.get("errors"):
        lines += ["## Errors", ""] + [f"- {e['phase']}: {e['error']}" for e in result["errors"]] + [""]
    return "\n".join(lines)


def render_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    base = result.get("baselines", {})
    names, rates = [], []
    for name in _BASELINES:
        if name in base:
            names.append(name.replace("_", "\n"))
            rates.append(base[name]["events_per_s"])
    colors = ["#9aa7b8"] * len(names)
    tp = result.get("pipeline", {}).get("throughput")
    by_producer = result.get("pipeline", {}).get("throughput_by_producer") or ({"": tp} if tp else {})
    for mode, run in by_producer.items():
        names.append(f"pipeline\n{mode}".strip())
        rates.append(run["events_per_s"])
        colors.append("#d9822b" if run.get("producer") == tp.get("producer") else "#f0c08a")
    side = result.get("pipeline", {}).get("workers_side_by_side") or {}
    for n, row in side.items():
        if row.get("run"):   # the pipeline phase's own run is drawn already
            names.append(f"pipeline\n{n} workers")
            rates.append(row["events_per_s"])
            colors.append("#b5651d")
    ax.bar(names, rates, color=colors)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_yscale("log")
    ax.set_title("Throughput (events/s, log scale)")
    for i, v in enumerate(rates):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)

    ax = axes[0][1]
    lat = result.get("pipeline", {}).get("latency", [])
    if lat:
        width = 0.11
        xs = range(len(lat))
        series = [("Kafka hop", "kafka_hop", "p50_ms"), ("runs", "runs_view", "p50_ms"),
                  ("runs", "runs_view", "p95_ms"), ("runs", "runs_view", "p99_ms"),
                  ("run_stats", "run_stats", "p50_ms"), ("run_stats", "run_stats", "p95_ms"),
                  ("run_stats", "run_stats", "p99_ms")]
        for k, (label, key, pct) in enumerate(series):
            ax.bar([x + (k - 3) * width for x in xs], [(row.get(key) or {}).get(pct) or 0 for row in lat], width,
                   label=f"{label} {pct[:3]}")
        ax.set_xticks(list(xs), [f"{row['target_pct_of_max']:g}%\n{row['target_events_per_s']:,}/s" for row in lat])
        ax.set_yscale("log")
        top = max([(row.get(key) or {}).get(pct) or 1 for row in lat for _, key, pct in series])
        ax.set_ylim(top=top * 12)
        ax.legend(fontsize=7, ncol=4, loc="upper center")
    ax.set_title("Event → queryable latency (ms, log scale) at % of max rate")

    ax = axes[1][0]
    timeline = result.get("resources", {}).get("rss_timeline", [])
    if timeline:
        phases: dict[str, list] = {}
        for phase, t, mb in timeline:
            phases.setdefault(phase if phase.startswith("throughput") else phase.split("-")[0], []).append((t, mb))
        for phase, points in phases.items():
            ax.plot([t for t, _ in points], [mb for _, mb in points], ".-", label=phase, markersize=3)
        ax.legend(fontsize=8)
    ax.set_title("Worker RSS (MiB) over the run (s)")

    ax = axes[1][1]
    sizes = result.get("queries", {}).get("sizes", [])
    if sizes:
        last = sizes[-1]["queries"]
        ranked = sorted([e for e in last if e.get("p50_ms") is not None], key=lambda e: e["p50_ms"])[-15:]
        names = [e["name"][:38] for e in ranked]
        height = 0.8 / len(sizes)
        for k, s in enumerate(sizes):
            by_name = {e["name"]: e for e in s["queries"]}
            ax.barh([i + k * height for i in range(len(ranked))],
                    [by_name.get(e["name"], {}).get("p50_ms") or 0 for e in ranked], height, label=s["label"])
        ax.set_yticks([i + height * (len(sizes) - 1) / 2 for i in range(len(ranked))], names, fontsize=7)
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_title("Slowest queries, p50 ms (log scale)")
    machine = result.get("machine", {})
    fig.suptitle(f"runlens bench {result.get('started_at', '')} — {machine.get('cpus')} CPUs, "
                 f"{machine.get('ram_gib')} GiB, Python {machine.get('python')}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
