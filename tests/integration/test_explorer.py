"""The run explorer and failure analysis on the shared perturbed workload: what `runlens runs`,
`export` and `sql` answer equals an independent computation from the raw lines, and one
account never sees another's runs."""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from dashboards import sqllib
from schemas.events import StepFinished
from tests.helpers import run_cli
from tests.integration.oracle_window import END, START
from tests.oracle import expected_runs, expected_steps, valid_events

pytestmark = pytest.mark.integration

WINDOW = ("--since", START.isoformat(), "--until", END.isoformat())
PARAMS = ("-p", f"since={START.isoformat()}", "-p", f"until={END.isoformat()}")


# --------------------------------------------------------------------------- the oracle


@pytest.fixture(scope="module")
def events(perturbed_file):
    return valid_events(perturbed_file[1])


@pytest.fixture(scope="module")
def runs(events):
    """(account, run_id) -> the oracle's run, plus names and contact from the run's latest event."""
    out = expected_runs(events)
    latest: dict = {}
    for e in events:
        key = (e.account_id, e.run_id)
        if key not in latest or e.ts >= latest[key].ts:
            latest[key] = e
    for key, run in out.items():
        e = latest[key]
        run.update(account_id=key[0], run_id=key[1], workflow_name=e.workflow_name, site_name=e.site_name,
                   card_name=e.card_name, contact_id=e.contact_id, replay_mode=e.replay_mode and e.replay_mode.value)
        run["moment"] = run["started_at"] or run["queued_at"] or run["finished_at"]
    return out


@pytest.fixture(scope="module")
def steps(events):
    return expected_steps(events)


def _in_window(moment, since=START, until=END) -> bool:
    return moment is not None and since.replace(tzinfo=None) <= moment < until.replace(tzinfo=None)


def _account_runs(runs, account, since=START, until=END) -> dict:
    return {k[1]: r for k, r in runs.items() if k[0] == account and _in_window(r["moment"], since, until)}


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def _csv(result) -> list[dict]:
    return list(csv.DictReader(io.StringIO(_ok(result), newline="")))


def _jsonl(result) -> list[dict]:
    return [json.loads(line) for line in _ok(result).splitlines() if line.strip()]


def _time(text: str | None):
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).replace(tzinfo=None)


# --------------------------------------------------------------------------- runs list


def test_list_filters_equal_the_recomputation(published, stack_settings, runs):
    acme = _account_runs(runs, "acme")
    sample = sorted(acme.values(), key=lambda r: r["run_id"])
    card = next(r["card_id"] for r in sample if r["card_id"])
    contact = next(r["contact_id"] for r in sample if r["contact_id"])
    version = next(r["workflow_version"] for r in sample if r["workflow_id"] == "wf-welcome")
    hour = (START + timedelta(hours=1), START + timedelta(hours=2))
    cases = [
        (["--status", "failed"], lambda r: r["status"] == "failed"),
        (["--status", "success,stopped", "--type", "contact"],
         lambda r: r["status"] in ("success", "stopped") and r["workflow_type"] == "contact"),
        (["--workflow", "Lead sync to Salesforce", "--trigger", "api"],
         lambda r: r["workflow_name"] == "Lead sync to Salesforce" and r["trigger"] == "api"),
        (["--site", "Main site", "--status", "running", "--status", "failed"],
         lambda r: (r["site_name"] == "Main site" or r["site_id"] == "Main site")
         and r["status"] in ("running", "failed")),
        (["--card", card], lambda r: r["card_id"] == card),
        (["--contact", contact], lambda r: r["contact_id"] == contact),
        (["--workflow", "wf-welcome", "--version", str(version)],
         lambda r: r["workflow_id"] == "wf-welcome" and r["workflow_version"] == version),
        (["--replays", "only"], lambda r: r["replay_of"] is not None),
    ]
    for args, keep in cases:
        rows = _csv(run_cli(stack_settings, "runs", "list", "-a", "acme", *WINDOW, *args, "--limit", "10000",
                            "-f", "csv"))
        expected = {run_id for run_id, r in acme.items() if keep(r)}
        assert expected, args
        assert {r["run_id"] for r in rows} == expected, args
        assert {r["account_id"] for r in rows} == {"acme"}
    rows = _csv(run_cli(stack_settings, "runs", "list", "-a", "acme", "--since", hour[0].isoformat(),
                        "--until", hour[1].isoformat(), "--limit", "10000", "-f", "csv"))
    assert {r["run_id"] for r in rows} == set(_account_runs(runs, "acme", *hour))


def test_sort_and_paging_follow_the_recomputation(published, stack_settings, runs):
    acme = _account_runs(runs, "acme")
    ordered = sorted(acme.values(), key=lambda r: (r["duration_ms"] is None, -(r["duration_ms"] or 0), r["run_id"]))
    rows = _csv(run_cli(stack_settings, "runs", "list", "-a", "acme", *WINDOW, "--sort", "duration:desc",
                        "--limit", "25", "--page", "2", "-f", "csv"))
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in ordered[25:50]]
    assert [int(r["duration_ms"]) for r in rows] == [r["duration_ms"] for r in ordered[25:50]]


# --------------------------------------------------------------------------- runs show / compare


def _replayed_failure_with_retries(runs, steps):
    retried = {(k[0], k[1]) for k, s in steps.items() if k[3] > 1}
    replays = defaultdict(list)
    for key, run in runs.items():
        if run["replay_of"]:
            replays[(key[0], run["replay_of"])].append(key[1])
    for key in sorted(retried):
        if runs.get(key, {}).get("status") == "failed" and replays.get(key) and _in_window(runs[key]["moment"]):
            return key, sorted(replays[key])
    raise AssertionError("the workload has no failed, retried and replayed run")


def test_show_a_failed_retried_replayed_run(published, stack_settings, runs, steps, events):
    (account, run_id), replay_ids = _replayed_failure_with_retries(runs, steps)
    doc = json.loads(_ok(run_cli(stack_settings, "runs", "show", run_id, "-a", account, "-f", "json")))
    run, expected = doc["run"], runs[(account, run_id)]
    for field in ("workflow_id", "workflow_name", "workflow_version", "trigger", "status", "error_code", "contact_id",
                  "site_name", "card_name", "duration_ms", "queue_ms"):
        assert run[field] == expected[field], field
    assert _time(run["started_at"]) == expected["started_at"] and _time(run["finished_at"]) == expected["finished_at"]
    mine = sorted((k[2], k[3]) for k in steps if k[:2] == (account, run_id))
    assert [(s["step_id"], s["attempt"]) for s in sorted(doc["steps"], key=lambda s: (s["step_id"], s["attempt"]))] \
        == mine
    assert any(s["attempt"] > 1 for s in doc["steps"])
    finished = {(e.step_id, e.attempt): e for e in events
                if isinstance(e, StepFinished) and (e.account_id, e.run_id) == (account, run_id)}
    for step in doc["steps"]:
        e = finished[(step["step_id"], step["attempt"])]
        assert step["status"] == e.status.value
        assert step["input"] == (json.dumps(e.input, separators=(",", ":")) if e.input is not None else None)
        if e.error is not None:
            assert (step["error_code"], step["error_message"], step["error_stack_trace"],
                    step["error_suggested_fix"]) == (e.error.code, e.error.message, e.error.stack_trace,
                                                     e.error.suggested_fix)
    assert [r["run_id"] for r in doc["replays"]] == replay_ids
    replay = json.loads(_ok(run_cli(stack_settings, "runs", "show", replay_ids[0], "-a", account, "-f", "json")))
    assert replay["original"]["run_id"] == run_id and replay["original"]["status"] == "failed"
    assert replay["run"]["replay_mode"] == runs[(account, replay_ids[0])]["replay_mode"]


def test_show_html_writes_the_run_page_and_refuses_another_account(published, stack_settings, runs, steps, tmp_path):
    (account, run_id), replay_ids = _replayed_failure_with_retries(runs, steps)
    out = tmp_path / "run.html"
    assert _ok(run_cli(stack_settings, "runs", "show", run_id, "-a", account, "--html", str(out))).strip() \
        == f"wrote {out.resolve()}"
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script src=" not in page
    mine = {k[2:]: s for k, s in steps.items() if k[:2] == (account, run_id)}
    log = page[page.index('<table class="log">'):]
    log = log[:log.index("</table>")]
    assert log.count("<tr") == 1 + len(mine)                  # the header and one row per attempt
    for step in mine.values():
        assert f"<td>{html.escape(step['step_name'])}</td>" in log
        assert f'<td class="nw">{step["step_type"]}</td>' in log
    assert any(attempt > 1 for _, attempt in mine)
    expected = runs[(account, run_id)]
    assert f"<code>{html.escape(expected['workflow_id'])}</code>" in page and expected["error_code"] in page
    assert all(replay in page for replay in replay_ids)
    assert page.count('data-bars="') == 1 and f'data-bars="{len(mine)}"' in page
    # another account's run is not found: one line, nothing written
    other = next(a for a in ("acme", "globex", "initech") if a != account and (a, run_id) not in runs)
    refused = tmp_path / "other.html"
    result = run_cli(stack_settings, "runs", "show", run_id, "-a", other, "--html", str(refused))
    assert result.returncode == 1 and result.stdout == b"" and not refused.exists()
    assert result.stderr.decode().count("\n") == 1 and f"not found in account '{other}'" in result.stderr.decode()


def test_show_a_delay_step_with_scheduled_and_actual_resume(published, stack_settings, events):
    delay = next(e for e in events if isinstance(e, StepFinished) and e.step_type.value == "delay"
                 and e.resumed_at is not None and e.account_id == "globex")
    doc = json.loads(_ok(run_cli(stack_settings, "runs", "show", delay.run_id, "-a", "globex", "-f", "json")))
    step = next(s for s in doc["steps"] if s["step_id"] == delay.step_id)
    assert _time(step["scheduled_resume_at"]) == delay.scheduled_resume_at.replace(tzinfo=None)
    assert _time(step["resumed_at"]) == delay.resumed_at.replace(tzinfo=None)
    assert step["resume_late_ms"] == round((delay.resumed_at - delay.scheduled_resume_at).total_seconds() * 1000)


def _last_attempts(steps, account, run_id) -> dict:
    last: dict = {}
    for (a, r, step_id, attempt), s in steps.items():
        if (a, r) == (account, run_id) and attempt >= last.get(step_id, (0, None))[0]:
            last[step_id] = (attempt, s)
    return {k: v[1] for k, v in last.items()}


def test_compare_a_replay_with_its_original(published, stack_settings, runs, steps):
    pairs = sorted((k[0], r["replay_of"], k[1]) for k, r in runs.items()
                   if r["replay_of"] and (k[0], r["replay_of"]) in runs and r["status"] in ("success", "failed"))
    fixed = next(p for p in pairs
                 if runs[(p[0], p[1])]["status"] == "failed" and runs[(p[0], p[2])]["status"] == "success")
    others = [p for p in pairs if p != fixed and runs[(p[0], p[2])]["status"] == "failed"]
    for account, original, replay in [fixed, *others[:1]]:
        doc = json.loads(_ok(run_cli(stack_settings, "runs", "compare", original, replay, "-a", account, "-f", "json")))
        o, r = runs[(account, original)], runs[(account, replay)]
        assert doc["linked"] is True
        assert doc["fixed"] is (o["status"] == "failed" and r["status"] == "success")
        a, b = _last_attempts(steps, account, original), _last_attempts(steps, account, replay)
        assert {s["step_id"] for s in doc["steps"]} == set(a) | set(b)
        for row in doc["steps"]:
            assert row["original_status"] == (a[row["step_id"]]["status"] if row["step_id"] in a else "not run")
            assert row["replay_status"] == (b[row["step_id"]]["status"] if row["step_id"] in b else "not run")
            assert row["replay_error_code"] == (b[row["step_id"]]["error_code"] if row["step_id"] in b else None)


def test_replay_outcomes_equal_the_recomputation(published, stack_settings, runs):
    for account in ("acme", "globex", "initech"):
        replays = [r for r in _account_runs(runs, account).values() if r["replay_of"]]
        rows = _csv(run_cli(stack_settings, "runs", "replays", "-a", account, *WINDOW, "-f", "csv"))
        totals = {r["replay_mode"]: r for r in rows if r["workflow_id"] == "*"}
        by_mode = defaultdict(list)
        for r in replays:
            by_mode[r["replay_mode"]].append(r)
        assert set(totals) == set(by_mode), account
        for mode, group in by_mode.items():
            originals = [runs[(account, r["replay_of"])] for r in group]
            assert int(totals[mode]["replays"]) == len(group)
            assert int(totals[mode]["succeeded"]) == sum(r["status"] == "success" for r in group)
            assert int(totals[mode]["fixed"]) == sum(r["status"] == "success" and o["status"] == "failed"
                                                     for r, o in zip(group, originals, strict=True))


# --------------------------------------------------------------------------- failure patterns

RULES = [  # the documented normalisation rules, written again here (dashboards/sql/README.md)
    (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>"),
    (r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>()]+", "<url>"),
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.,@_-]*", "<email>"),
    (r"\b[A-Za-z]+[_-][A-Za-z0-9_-]*[0-9][A-Za-z0-9_-]*", "<id>"),
    (r"\b[0-9a-fA-F]{4,}(?:-[0-9a-fA-F]{4,})+\b", "<id>"),
    (r"\b[0-9a-fA-F]*(?:[0-9][0-9a-fA-F]*[a-fA-F]|[a-fA-F][0-9a-fA-F]*[0-9])[0-9a-fA-F]*\b", "<id>"),
    (r"[0-9]+(?:\.[0-9]+)?", "<n>"),
]


def normalise(message: str | None) -> str:
    text = message or ""
    for pattern, replacement in RULES:
        text = re.sub(pattern, replacement, text, flags=re.ASCII)
    return " ".join(text.split())


def test_error_signatures_equal_an_independent_grouping(published, stack_settings, runs, events):
    for account in ("acme", "globex"):
        groups: dict = defaultdict(lambda: {"occurrences": 0, "runs": set()})
        for e in events:
            if (isinstance(e, StepFinished) and e.account_id == account and e.status.value == "failed"
                    and _in_window(e.ts.replace(tzinfo=None))):
                group = groups[(e.error.code, e.step_name, normalise(e.error.message))]
                group["occurrences"] += 1
                group["runs"].add(e.run_id)
        rows = _jsonl(run_cli(stack_settings, "sql", "error_signatures", "-a", account, *PARAMS, "-p", "limit=10000",
                              "-f", "json"))
        actual = {(r["error_code"], r["step_name"], r["message"]): r for r in rows}
        assert set(actual) == set(groups), account
        assert len(groups) < sum(g["occurrences"] for g in groups.values())  # normalisation did group messages
        for key, group in groups.items():
            row = actual[key]
            assert row["occurrences"] == group["occurrences"], key
            assert row["runs"] == len(group["runs"]), key
            assert row["failed_runs"] == sum(runs[(account, r)]["status"] == "failed" for r in group["runs"]), key
            assert row["sample_run_id"] in group["runs"]
            assert re.fullmatch(r"[0-9a-f]{1,16}", row["signature"])


def test_new_since_version_keeps_signatures_first_seen_on_that_version_or_later(published, reader):
    query = sqllib.load("error_signatures")
    now = datetime.now(UTC)

    def signatures(version: int) -> dict:
        bound = sqllib.bind(query, "acme", {"new_since_version": str(version), "limit": "10000"}, now)
        result = reader.query(bound.sql, parameters=bound.params)
        if not result.result_rows:
            return {}
        i, j = result.column_names.index("signature"), result.column_names.index("first_version")
        return {row[i]: row[j] for row in result.result_rows}

    everything = signatures(0)
    versions = sorted(set(everything.values()))
    assert len(versions) > 1
    cut = versions[1]
    assert signatures(cut) == {s: v for s, v in everything.items() if v >= cut}
    assert signatures(versions[-1] + 1) == {}


def test_mttr_equals_an_independent_computation(published, stack_settings, runs):
    finished = defaultdict(list)
    for (account, run_id), r in runs.items():
        if account == "acme" and r["status"] in ("success", "failed") and _in_window(r["finished_at"]):
            finished[r["workflow_id"]].append((r["finished_at"], run_id, r["status"]))
    expected = {}
    for workflow, items in finished.items():
        opened, recoveries, incidents = None, [], 0
        for at, _, status in sorted(items):
            if status == "failed" and opened is None:
                opened, incidents = at, incidents + 1
            elif status == "success" and opened is not None:
                recoveries.append((at - opened).total_seconds())
                opened = None
        expected[workflow] = (incidents, len(recoveries),
                              sum(recoveries) / len(recoveries) if recoveries else None, opened)
    rows = _csv(run_cli(stack_settings, "sql", "mttr_by_workflow", "-a", "acme", *PARAMS, "-f", "csv"))
    actual = {r["workflow_id"]: r for r in rows}
    assert set(actual) == set(expected)
    assert any(e[1] for e in expected.values())
    for workflow, (incidents, recovered, mttr, open_since) in expected.items():
        row = actual[workflow]
        assert (int(row["incidents"]), int(row["recovered"])) == (incidents, recovered), workflow
        assert (row["mttr_s"] == "") == (mttr is None)
        if mttr is not None:
            assert abs(float(row["mttr_s"]) - mttr) < 0.002, workflow
        assert _time(row["open_since"]) == open_since


@pytest.mark.parametrize("name", sorted(sqllib.library()))
def test_every_library_query_answers_for_one_account_only(published, reader, runs, name):
    """Each file returns rows for acme; run ids it returns are acme's; an unknown account gets none."""
    query = sqllib.load(name)
    given = {"since": START.isoformat(), "until": END.isoformat()}
    if name == "run_steps":
        given = {"run_id": next(k[1] for k, r in runs.items() if k[0] == "acme" and r["status"] == "failed")}
    given = {k: v for k, v in given.items() if query.param(k)}
    now = datetime.now(UTC)
    bound = sqllib.bind(query, "acme", given, now)
    result = reader.query(bound.sql, parameters=bound.params)
    assert result.result_rows, name
    acme_runs = {k[1] for k in runs if k[0] == "acme"}
    for column in ("sample_run_id", "replay_run_id", "original_run_id"):
        if column in result.column_names:
            i = result.column_names.index(column)
            assert {row[i] for row in result.result_rows} <= acme_runs, column
    nobody = sqllib.bind(query, "nobody-at-all", given, now)
    assert reader.query(nobody.sql, parameters=nobody.params).result_rows == []


# --------------------------------------------------------------------------- export


def test_export_of_filtered_runs_equals_the_recomputation_row_by_row(published, stack_settings, runs, tmp_path):
    out = tmp_path / "runs.csv"
    result = run_cli(stack_settings, "export", "runs", "-a", "acme", *WINDOW, "--status", "success,failed,stopped",
                     "--out", str(out))
    assert "exported" in _ok(result)
    raw = out.read_bytes()
    assert raw.startswith(b"account_id,run_id,") and b"\r\n" in raw
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    expected = {k: r for k, r in _account_runs(runs, "acme").items() if r["status"] != "running"}
    assert [r["run_id"] for r in rows] == sorted(expected, key=lambda k: (expected[k]["started_at"], k))
    for row in rows:
        want = expected[row["run_id"]]
        for field in ("workflow_id", "workflow_name", "workflow_type", "trigger", "status", "site_id", "card_id",
                      "contact_id", "error_code", "error_class", "replay_of", "replay_mode"):
            assert (row[field] or None) == want[field], (row["run_id"], field)
        for field in ("workflow_version", "queue_ms", "duration_ms"):
            assert (int(row[field]) if row[field] else None) == want[field], (row["run_id"], field)
        for field in ("queued_at", "started_at", "finished_at"):
            assert _time(row[field]) == want[field], (row["run_id"], field)


def test_export_failures_keeps_quotes_commas_and_newlines(published, stack_settings, events, tmp_path):
    out = tmp_path / "failures.csv"
    _ok(run_cli(stack_settings, "export", "failures", "-a", "acme", *WINDOW, "--out", str(out)))
    rows = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    expected = {(e.run_id, e.step_id, e.attempt): e for e in events
                if isinstance(e, StepFinished) and e.account_id == "acme" and e.status.value == "failed"
                and _in_window(e.ts.replace(tzinfo=None))}
    assert {(r["run_id"], r["step_id"], int(r["attempt"])) for r in rows} == set(expected)
    tricky = 0
    for row in rows:
        e = expected[(row["run_id"], row["step_id"], int(row["attempt"]))]
        assert row["error_message"] == e.error.message and row["error_stack_trace"] == e.error.stack_trace
        assert row["message_normalized"] == normalise(e.error.message)
        trace = row["error_stack_trace"]
        tricky += "\n" in trace and '"' in trace and "," in trace
    assert tricky == len(rows) > 0


# --------------------------------------------------------------------------- tenancy


def test_one_account_never_reads_another(published, stack_settings, runs, steps, tmp_path):
    globex = set(_account_runs(runs, "globex"))
    acme_failed = next(k[1] for k, r in sorted(runs.items()) if k[0] == "acme" and r["status"] == "failed")
    listed = _jsonl(run_cli(stack_settings, "runs", "list", "-a", "globex", *WINDOW, "--limit", "10000", "-f", "json"))
    assert {r["account_id"] for r in listed} == {"globex"} and {r["run_id"] for r in listed} == globex
    shown = run_cli(stack_settings, "runs", "show", acme_failed, "-a", "globex")
    assert shown.returncode == 1 and "not found in account 'globex'" in shown.stderr.decode()
    out = tmp_path / "steps.csv"
    _ok(run_cli(stack_settings, "export", "steps", "-a", "globex", *WINDOW, "--out", str(out)))
    exported = list(csv.DictReader(io.StringIO(out.read_text(), newline="")))
    assert {r["account_id"] for r in exported} == {"globex"} and {r["run_id"] for r in exported} <= globex
    assert len(exported) == sum(1 for k in steps if k[0] == "globex" and k[1] in globex)
    signatures = _jsonl(run_cli(stack_settings, "sql", "error_signatures", "-a", "globex", *PARAMS, "-f", "json"))
    assert signatures and {s["sample_run_id"] for s in signatures} <= globex
    for account in ("acme' OR '1'='1", "acme%", ""):
        result = run_cli(stack_settings, "runs", "list", "-a", account, *WINDOW, "-f", "csv")
        assert result.returncode != 0 or _csv(result) == [], account


def test_retention_show_lists_the_configurable_plans(published, stack_settings):
    rows = _csv(run_cli(stack_settings, "retention", "show", "-f", "csv"))
    assert {(r["plan"], int(r["retention_days"])) for r in rows if r["account"] == "(plan)"} >= \
        {("free", 7), ("pro", 30), ("enterprise", 365)}
    # (`retention set` applies a TTL; the shared workload is older than the plans keep, so it is
    # exercised on a warehouse of its own: test_export_retention.py)
