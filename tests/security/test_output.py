"""What runlens prints and writes is safe with hostile event text and secret settings: tables
show event text inert (no escape sequences, control characters, bidi overrides or rich markup
reach the terminal), CSV cells that a spreadsheet would run as formulas are neutralised (text
only; --raw-csv writes them as stored), and no password is shown (URLs redacted, Settings'
repr and str included)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from runlens.cli.common import OutputFormat, csv_safe, printable, write_rows
from runlens.cli.export import CsvGuard
from runlens.settings import Settings, redact_text, redact_url

pytestmark = pytest.mark.security

UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
HOSTILE = ("\x1b[31mRED\x1b[0m \x1b]0;owned\x07title \x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ \x9b2J "
           "[bold]bold[/bold] [link=http://evil]x[/link] \u202eevil\u202c \u2066iso\u2069 bell\x07 cr\r end")


# --------------------------------------------------------------------------- terminal text


@pytest.mark.parametrize("text, shown", [
    ("\x1b[31mred\x1b[0m", "red"),
    ("\x1b[2J\x1b[H", ""),
    ("a\x1b]0;window title\x07b", "ab"),
    ("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\b", "alinkb"),
    ("\x9b31mcsi8", "csi8"),
    ("nul\x00 bell\x07 bs\x08 cr\r del\x7f c1\x85", "nul bell bs cr del c1"),
    ("\u202eevil\u202c \u2066x\u2069 \u200fm", "evil x m"),
    ("[bold]literal[/bold]", "[bold]literal[/bold]"),
    ("keeps\nnew lines\tand tabs", "keeps\nnew lines\tand tabs"),
    ("ünïcødé 名前 😀", "ünïcødé 名前 😀"),
])
def test_printable_removes_what_a_terminal_would_act_on(text, shown):
    assert printable(text) == shown


def test_printable_one_line_turns_line_breaks_into_spaces():
    assert printable("a\nb\tc\r\nd", one_line=True) == "a b c  d"


def test_a_table_of_event_text_prints_inert(capsys):
    write_rows(["name", "count"], [(HOSTILE, -5), ("plain", None)], OutputFormat.table)
    out = capsys.readouterr().out
    assert not UNSAFE.search(out), repr(out)
    assert "[bold]bold[/bold]" in out and "[link=http://evil]x[/link]" in out   # markup printed, not applied
    assert "RED" in out and "evil" in out and "-5" in out


def test_a_column_name_prints_inert(capsys):
    write_rows(["\x1b[2J[red]col"], [(1,)], OutputFormat.table)
    out = capsys.readouterr().out
    assert not UNSAFE.search(out) and "[red]col" in out


# --------------------------------------------------------------------------- CSV


@pytest.mark.parametrize("value, written", [
    ("=HYPERLINK(\"http://evil\",\"x\")", "'=HYPERLINK(\"http://evil\",\"x\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(1+1)", "'@SUM(1+1)"), ("\tTAB", "'\tTAB"), ("\rCR", "'\rCR"),
    ("-5", "'-5"),              # text that looks like a number is still text
    ("safe = text", "safe = text"), ("", ""), ("'quoted", "'quoted"),
    (-5, -5), (3.5, 3.5), (None, None),
])
def test_csv_safe_guards_text_only(value, written):
    assert csv_safe(value) == written


def test_csv_rows_are_guarded_unless_raw():
    rows = [("=1+1", -5, "@x", None, 2.5)]
    guarded, raw = io.StringIO(), io.StringIO()
    write_rows(["a", "b", "c", "d", "e"], rows, OutputFormat.csv, stream=guarded)
    write_rows(["a", "b", "c", "d", "e"], rows, OutputFormat.csv, stream=raw, raw_csv=True)
    assert list(csv.reader(io.StringIO(guarded.getvalue())))[1] == ["'=1+1", "-5", "'@x", "", "2.5"]
    assert list(csv.reader(io.StringIO(raw.getvalue())))[1] == ["=1+1", "-5", "@x", "", "2.5"]


def _clickhouse_csv(rows, cell=lambda v: v) -> bytes:
    """Rows as ClickHouse writes CSV: text quoted with quotes doubled, numbers bare, NULL empty,
    CRLF record ends."""
    def field(value):
        if value is None:
            return ""
        if isinstance(value, str):
            return '"' + cell(value).replace('"', '""') + '"'
        return str(value)
    return "".join(",".join(field(v) for v in row) + "\r\n" for row in rows).encode()


CELLS = st.one_of(st.none(), st.integers(-10**6, 10**6),
                  st.text(alphabet=st.sampled_from(list('=+-@\t\r\n", ab\'é')), max_size=8))


@hsettings(max_examples=400, deadline=None)
@given(rows=st.lists(st.lists(CELLS, min_size=1, max_size=5), min_size=1, max_size=6),
       cuts=st.lists(st.integers(0, 400), max_size=8))
def test_csv_guard_of_a_stream_equals_guarding_each_text_cell(rows, cuts):
    """Whatever chunks the stream arrives in, the guarded stream equals the rows written with
    ``csv_safe`` on every text cell; numbers (negative ones too) and NULLs are left alone."""
    data = _clickhouse_csv(rows)
    guard, out, start = CsvGuard(), [], 0
    for cut in sorted(c for c in cuts if c < len(data)) + [len(data)]:
        out.append(guard.feed(data[start:cut]))
        start = cut
    out.append(guard.feed(b"", final=True))
    assert b"".join(out) == _clickhouse_csv(rows, lambda s: csv_safe(s))


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("url, shown", [
    ("http://runlens:hunter2@ch.example:8123", "http://runlens:***@ch.example:8123"),
    ("https://u:p@ss/w:rd@ch.example:8443/db?x=1", "https://u:***@ch.example:8443/db?x=1"),
    ("http://ch.example:8123/?user=u&password=hunter2", "http://ch.example:8123/?user=u&password=***"),
    ("https://api.example/hook?token=abc&sig=def", "https://api.example/hook?token=***&sig=***"),
    ("http://runlens@clickhouse:8123", "http://runlens@clickhouse:8123"),
    ("chdb:///data/warehouse", "chdb:///data/warehouse"),
    ("kafka:9092,kafka2:9092", "kafka:9092,kafka2:9092"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_a_webhook_url_can_hide_its_path():
    assert redact_url("https://hooks.slack.com/services/T0/B0/s3cr3t", keep_path=False) == \
        "https://hooks.slack.com/***"


def test_settings_repr_and_str_show_no_secret():
    s = Settings(warehouse_dsn="http://runlens:dsn-Pw-1@ch:8123", query_url="http://reader:query-Pw-2@ch:8123",
                 warehouse_password="override-Pw-3", alert_webhook_url="https://hooks.example/services/hook-Pw-4",
                 broker_storage="s3://key:storage-Pw-5@bucket/", write_password="writer-Pw-6")
    for text in (repr(s), str(s), f"{s}", redact_text(f"failed with {s.warehouse_dsn}", s.secrets())):
        assert not re.search(r"Pw-\d", text), text
    assert "http://runlens:***@ch:8123" in repr(s)
    assert s.to_env()["RUNLENS_WAREHOUSE_DSN"] == "http://runlens:dsn-Pw-1@ch:8123"   # children still get it
    assert s.secrets() == {"dsn-Pw-1", "query-Pw-2", "override-Pw-3", "services/hook-Pw-4", "storage-Pw-5",
                           "writer-Pw-6"}


def test_redact_text_scrubs_urls_and_known_secrets_in_a_message():
    message = ("cannot reach http://u:hunter22@h:8123/?query_id=1 (Caused by ...): "
               "Authentication failed for password hunter22")
    assert redact_text(message, {"hunter22"}) == ("cannot reach http://u:***@h:8123/?query_id=1 (Caused by ...): "
                                                   "Authentication failed for password ***")
