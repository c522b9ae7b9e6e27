"""`runlens runs replay|stop|commands` input handling (runlens.cli.commands): overrides, command
ids and the listing's query, before anything runs."""

from __future__ import annotations

import pytest

from runlens.cli.commands import BadArgument, _command_id, command_list, parse_overrides


def test_overrides_are_field_value_pairs_of_the_allow_list() -> None:
    assert parse_overrides(["contact_id=c-7", " workflow_version = 3 "]) == {"contact_id": "c-7",
                                                                            "workflow_version": "3"}
    assert parse_overrides([]) == {}


@pytest.mark.parametrize(("item", "message"), [
    ("contact_id", "is not FIELD=VALUE"),
    ("=c-1", "is not FIELD=VALUE"),
    ("contact_id=", "is not FIELD=VALUE"),
    ("status=success", "'status' cannot be overridden (overridable: contact_id, workflow_version)"),
    ("workflow_version=v3", "is not a version number"),
    ("workflow_version=4294967296", "is not a version number"),
])
def test_a_bad_override_is_one_line(item: str, message: str) -> None:
    with pytest.raises(BadArgument, match="^--set: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_overrides([item])


def test_a_field_given_twice_is_refused() -> None:
    with pytest.raises(BadArgument, match="contact_id given twice"):
        parse_overrides(["contact_id=c-1", "contact_id=c-2"])


def test_command_ids() -> None:
    assert _command_id("retry-2026.12.01:1") == "retry-2026.12.01:1"
    for bad in ("-x", "a b", "x" * 129, "é", "a'b"):
        with pytest.raises(BadArgument, match="--command-id"):
            _command_id(bad)


def test_the_listing_reads_one_account_with_bound_values() -> None:
    sql, params = command_list("acme' OR 1=1", "run_1", 50)
    assert "acme" not in sql and "run_1" not in sql
    assert "account_id = {account:String} AND run_id = {run:String}" in sql and "ORDER BY requested_at DESC" in sql
    assert params == {"account": "acme' OR 1=1", "run": "run_1", "limit": 50}
    assert "run_id =" not in command_list("acme", None, 5)[0]
    with pytest.raises(BadArgument):
        command_list("  ", None, 5)
