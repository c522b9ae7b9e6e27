"""Bad command-line input ends in one line on stderr and a non-zero exit code, never a traceback."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["bogus"], 2, "No such command 'bogus'"),
        (["query"], 2, "Missing argument 'sql'"),
        (["query", "SELECT 1", "--format", "xml"], 2, "'xml' is not one of 'table', 'csv', 'json'"),
        (["simulate", "--rate", "-3"], 2, "--rate"),
        (["simulate", "--duration", "ten minutes", "--out", "x.ndjson"], 2, "--duration: invalid duration"),
        (["simulate", "--now", "next tuesday", "--out", "x.ndjson"], 2, "--now: invalid time"),
        (["simulate", "--now", "2400-01-01T00:00:00Z", "--out", "x.ndjson"], 2,
         "--now: '2400-01-01T00:00:00Z' is outside"),
        (["publish", "/no/such/file.ndjson"], 1, "no such file: /no/such/file.ndjson"),
        (["publish", "-"], 1, "no running stack"),
        (["query", "SELECT 1"], 1, "no running stack"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_code(run_cli, tmp_path, argv, code, message):
    exit_code, _, err = run_cli(*argv, env={"RUNLENS_DATA_DIR": str(tmp_path)})
    assert exit_code == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("runlens: error: ") and message in lines[0]


def test_bad_setting_is_one_line(run_cli, tmp_path):
    exit_code, _, err = run_cli("query", "SELECT 1",
                                env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_PARTITIONS": "many"})
    assert exit_code == 1
    assert err.strip() == ("runlens: error: bad setting RUNLENS_PARTITIONS: "
                           "Input should be a valid integer, unable to parse string as an integer")


def test_help_is_available_everywhere(run_cli, tmp_path):
    for argv in (["--help"], ["up", "--help"], ["publish", "--help"], ["simulate", "--help"],
                 ["query", "--help"], ["schema", "export", "--help"], ["demo", "--help"]):
        exit_code, out, _ = run_cli(*argv, env={"RUNLENS_DATA_DIR": str(tmp_path)})
        assert exit_code == 0 and "Usage: runlens" in out


def test_schema_export_writes_json_schema(run_cli, tmp_path):
    target = tmp_path / "event.schema.json"
    assert run_cli("schema", "export", "--out", str(target), env={"RUNLENS_DATA_DIR": str(tmp_path)}).code == 0
    text = target.read_text()
    assert '"run.finished"' in text and '"workflow_type"' in text
