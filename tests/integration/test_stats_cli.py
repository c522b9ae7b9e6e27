"""`runlens stats` over the shared perturbed workload: the numbers a user reads equal the batch
recomputation, and bad input is a one-line error with nothing executed."""

from __future__ import annotations

import csv
import io

import pytest

from tests.helpers import run_cli
from tests.integration.oracle_window import END, START
from tests.oracle import expected_run_stats, valid_events

pytestmark = pytest.mark.integration

WINDOW = ("--since", START.isoformat(), "--until", END.isoformat())


def _csv(result) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    return list(csv.DictReader(io.StringIO(result.stdout.decode())))


def test_success_by_type_equals_recomputation(published, perturbed_file, stack_settings):
    _, lines = perturbed_file
    expected: dict[tuple[str, str], list[int]] = {}
    for key, cell in expected_run_stats(valid_events(lines)).items():
        totals = expected.setdefault((key[1], key[4]), [0, 0, 0])
        totals[0] += cell["finished"]
        totals[1] += cell["succeeded"]
        totals[2] += cell["failed"]
    rows = _csv(run_cli(stack_settings, "stats", "success", "--by", "account,type", *WINDOW, "-f", "csv"))
    actual = {(r["account"], r["type"]): [int(r["runs_finished"]), int(r["succeeded"]), int(r["failed"])]
              for r in rows}
    assert actual == expected


def test_filters_narrow_the_answer(published, stack_settings):
    rows = _csv(run_cli(stack_settings, "stats", "success", "--by", "workflow", "--account", "acme",
                        "--type", "contact", "--trigger", "automatic", *WINDOW, "-f", "csv"))
    assert rows
    everything = _csv(run_cli(stack_settings, "stats", "success", "--by", "workflow", *WINDOW, "-f", "csv"))
    assert sum(int(r["runs_finished"]) for r in rows) < sum(int(r["runs_finished"]) for r in everything)


@pytest.mark.parametrize("command", ["durations", "bottlenecks", "queue", "peaks", "alerts"])
def test_every_stats_command_answers(published, stack_settings, command):
    args = ["stats", command, "--since", START.isoformat(), "-f", "csv"]
    if command in ("durations", "bottlenecks", "queue"):
        args += ["--until", END.isoformat()]
    result = run_cli(stack_settings, *args)
    assert result.returncode == 0, result.stderr.decode()
    header = result.stdout.decode().splitlines()[0] if result.stdout else ""
    if command != "alerts":
        assert len(result.stdout.decode().splitlines()) > 1, header


def test_bottlenecks_shares_add_up_per_workflow(published, stack_settings):
    rows = _csv(run_cli(stack_settings, "stats", "bottlenecks", "--account", "acme", *WINDOW, "-f", "csv"))
    totals: dict[str, float] = {}
    for row in rows:
        totals[row["workflow"]] = totals.get(row["workflow"], 0) + float(row["share_pct"])
    assert totals and all(abs(total - 100) < 1 for total in totals.values())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stats", "success", "--by", "colour"], "cannot group by 'colour'"),
        (["stats", "success", "--by", "day,week"], "at most one time grain"),
        (["stats", "success", "--type", "blog"], "--type: unknown workflow type 'blog'"),
        (["stats", "durations", "--since", "last tuesday"], "invalid time 'last tuesday'"),
        (["stats", "queue", "--by", "fortnight"], "unknown time grain 'fortnight'"),
        (["stats", "alerts", "--state", "angry"], "'angry' is not one of"),
    ],
)
def test_bad_stats_input_is_one_line(published, stack_settings, args, message):
    result = run_cli(stack_settings, *args)
    assert result.returncode in (1, 2)
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_injection_in_a_filter_is_just_a_value(published, stack_settings):
    result = run_cli(stack_settings, "stats", "success", "--account", "acme' OR 1=1 --", *WINDOW, "-f", "csv")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().strip().splitlines()[1:] == []


def test_reconcile_finds_no_drift_on_the_shared_workload(published, stack_settings):
    result = run_cli(stack_settings, "reconcile", "--since", START.isoformat())
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stderr.decode().startswith("drift: 0 runs in 0 buckets")
