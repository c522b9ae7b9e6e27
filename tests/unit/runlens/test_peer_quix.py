"""The pure parts of the bench's peer yardstick P1: reading the peer's result line, its figures,
the runlens / P1 comparison, when P1 is skipped and when its venv counts as built."""

from __future__ import annotations

import json
import sys

import pytest

from runlens.bench import peer_quix as peer


def _line(**fields: object) -> str:
    doc = {"events": 200_000, "rejected": 0, "seconds": 8.0, "cpu_s": 6.0, "inserts": 40, "rss_mb_peak": 180.5}
    doc.update(fields)
    return json.dumps(doc)


def test_the_last_json_line_is_the_result():
    out = "some log line\n" + _line(events=1) + "\nmore logging\n" + _line() + "\n"
    assert peer.parse_peer_result(out)["events"] == 200_000


@pytest.mark.parametrize("stdout, words", [
    ("", "no result line"),
    ("{not json\n", "not JSON"),
    ("[1, 2]\n", "no result line"),
    ('{"error": "timed out after 180s", "events": 3}\n', "timed out after 180s"),
    (_line(seconds=None), "'seconds'"),
    (_line(cpu_s=-1), "'cpu_s'"),
    (_line(events=True), "'events'"),
    (_line(events=0), "stored no events"),
])
def test_a_missing_or_failed_result_is_refused(stdout, words):
    with pytest.raises(ValueError, match=words):
        peer.parse_peer_result(stdout)


def test_figures_per_event_and_per_million():
    figures = peer.p1_figures(peer.parse_peer_result(_line()), warehouse_cpu_s=2.0)
    assert figures["events_per_s"] == 25_000
    assert figures["cpu_s_per_million"] == 30.0 and figures["warehouse_cpu_s_per_million"] == 10.0
    assert figures["total_cpu_s_per_million"] == 40.0
    assert peer.p1_figures(peer.parse_peer_result(_line()), None)["total_cpu_s_per_million"] is None


def test_comparison_says_who_wins():
    p1 = {"events_per_s": 20_000, "cpu_s_per_million": 30.0, "total_cpu_s_per_million": 40.0}
    ahead = peer.peer_comparison({"events_per_s": 50_000, "worker_cpu_s_per_million": 15.0,
                                  "warehouse_cpu_s_per_million": 5.0}, p1)
    assert ahead["runlens_to_P1"] == 2.5 and ahead["cpu_per_million_runlens_to_P1"] == 0.5
    assert ahead["verdict"].startswith("runlens wins")
    behind = peer.peer_comparison({"events_per_s": 10_000, "worker_cpu_s_per_million": 50.0}, p1)
    assert behind["runlens_to_P1"] == 0.5 and behind["verdict"].startswith("P1 (quix-streams) wins")
    assert peer.peer_comparison({"events_per_s": 20_100}, p1)["verdict"].startswith("a tie")


def test_comparison_prefers_the_run_timed_as_the_pipeline():
    p1 = {"events_per_s": 20_000, "total_cpu_s_per_million": 40.0,
          "as_pipeline": {"events_per_s": 25_000, "total_cpu_s_per_million": 20.0}}
    doc = peer.peer_comparison({"events_per_s": 50_000, "worker_cpu_s_per_million": 10.0}, p1)
    assert doc["runlens_to_P1"] == 2.0 and doc["runlens_to_P1_prefilled"] == 2.5
    assert doc["P1_events_per_s"] == 25_000 and doc["cpu_per_million_runlens_to_P1"] == 0.5
    assert "timed as the pipeline" in doc["basis"]


def test_no_comparison_without_both_figures():
    skipped = peer.peer_comparison({"events_per_s": 1}, {"skipped": "no registry"})
    assert skipped["runlens_to_P1"] is None and "no registry" in skipped["verdict"]
    assert peer.peer_comparison(None, {"events_per_s": 5})["runlens_to_P1"] is None
    assert "not measured" in peer.peer_comparison({"events_per_s": 5}, None)["verdict"]


def test_quick_bench_runs_p1_only_on_a_built_venv():
    assert peer.skip_reason(quick=False, ready=False) is None
    assert peer.skip_reason(quick=False, ready=True) is None
    assert peer.skip_reason(quick=True, ready=True) is None
    assert "quick bench" in (peer.skip_reason(quick=True, ready=False) or "")


def test_a_venv_counts_as_built_only_with_its_marker(tmp_path, monkeypatch):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    assert not peer.venv_ready(venv)
    (venv / peer.READY_MARKER).write_text("quixstreams==1.0")   # built for another package list
    assert not peer.venv_ready(venv)
    (venv / peer.READY_MARKER).write_text("\n".join(peer.PEER_PACKAGES))
    assert peer.venv_ready(venv)
    monkeypatch.setenv("RUNLENS_PEER_VENV", str(venv))
    assert peer.peer_venv_dir() == venv
