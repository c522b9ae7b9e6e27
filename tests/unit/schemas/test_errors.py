"""One exception root: every error runlens raises on purpose is a RunlensError of one kind, with a
stable short ``code``; the warehouse's transient rule decides on ClickHouse's numeric code."""

from __future__ import annotations

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from dashboards.macros import MacroError
from dashboards.runs import QueryError
from dashboards.stats import StatsError
from embedded.access import EngineError, Refused
from embedded.stack import StackNotRunning
from producers.kafka import BrokerUnavailable, DeliveryFailed
from schemas.errors import InputError, PoisonError, RetryableError, RunlensError, UnavailableError
from schemas.times import DurationOutOfRange, parse_duration
from sinks.clickhouse import (
    TRANSIENT_SERVER_CODES,
    InsertAbandoned,
    Warehouse,
    WarehouseRefused,
    WarehouseUnavailable,
    is_transient,
    server_code,
)
from sinks.fence import WriteGate
from sinks.retention import RetentionError

TREE = {
    BrokerUnavailable: UnavailableError,
    DeliveryFailed: RetryableError,
    WarehouseRefused: PoisonError,
    WarehouseUnavailable: RetryableError,
    RetentionError: InputError,
    MacroError: InputError,
    StatsError: InputError,
    QueryError: InputError,
    DurationOutOfRange: InputError,
    StackNotRunning: UnavailableError,
    Refused: PoisonError,
    EngineError: RunlensError,
    InsertAbandoned: RunlensError,
}


@pytest.mark.parametrize("cls,kind", TREE.items(), ids=lambda c: getattr(c, "__name__", ""))
def test_every_error_has_one_kind_and_a_code(cls, kind):
    assert issubclass(cls, kind) and issubclass(cls, RunlensError)
    assert isinstance(cls.code, str) and cls.code and cls.code != kind.code


def test_codes_are_unique():
    codes = [cls.code for cls in TREE]
    assert len(codes) == len(set(codes))


def test_input_errors_are_still_value_errors():
    for cls, kind in TREE.items():
        if kind is InputError:
            assert issubclass(cls, ValueError)
    with pytest.raises(ValueError):
        parse_duration("36501d")
    with pytest.raises(InputError):
        parse_duration("36501d")


def test_error_tree_is_single_inheritance():
    """One parent each (InputError also stays a ValueError): a kind is never two kinds, so handlers
    may dispatch in any order."""
    for cls in TREE:
        runlens_parents = [base for base in cls.__bases__ if issubclass(base, RunlensError)]
        assert len(runlens_parents) == 1, cls
    exc = WarehouseUnavailable("down", server_code=159)
    assert isinstance(exc, RetryableError) and not isinstance(exc, PoisonError) and exc.server_code == 159
    assert not issubclass(WarehouseRefused, RetryableError)


def test_read_path_errors_keep_their_clickhouse_number():
    refused = Refused(497, "ACCESS_DENIED", "no")
    assert refused.code == 497 and refused.server_code == 497 and refused.status == 403
    engine = EngineError("Code: 60. DB::Exception: Unknown table")
    assert engine.code == 60 and engine.server_code == 60
    assert EngineError("boom").code == 1000


@pytest.mark.parametrize("exc,code", [
    (DatabaseError("whatever", code=252), 252),
    (DatabaseError("Code: 159. DB::Exception: Timeout exceeded"), 159),
    (DatabaseError("Received ClickHouse exception, code: 241, server response: Code: 241. DB::Exception"), 241),
    (OperationalError("Connection refused"), None),
])
def test_server_code_from_attribute_or_message(exc, code):
    assert server_code(exc) == code


def test_transient_rule_is_on_the_numeric_code():
    assert {159, 202, 203, 209, 210, 241, 242, 252, 999} == TRANSIENT_SERVER_CODES
    assert is_transient(159, DatabaseError("x"))
    assert not is_transient(60, DatabaseError("Code: 60. Unknown table; Connection in the text"))
    assert not is_transient(24, DatabaseError("x"))   # not 241 by prefix
    assert is_transient(None, DatabaseError("Connection reset by peer"))
    assert not is_transient(None, DatabaseError("something else"))


class _Client:
    def __init__(self, exc):
        self.exc = exc

    def insert(self, *args, **kwargs):
        raise self.exc

    def query(self, *args, **kwargs):
        class _Result:
            result_rows = [("a", "String")]
        return _Result()


@pytest.mark.parametrize("exc,kind,code", [
    (DatabaseError("Code: 252. DB::Exception: Too many parts", code=252), WarehouseUnavailable, 252),
    (DatabaseError("Code: 60. DB::Exception: Unknown table", code=60), WarehouseRefused, 60),
    (OperationalError("HTTPConnectionPool: Connection refused"), WarehouseUnavailable, None),
])
def test_insert_wraps_driver_errors_by_kind(exc, kind, code):
    with pytest.raises((WarehouseUnavailable, WarehouseRefused)) as caught:
        Warehouse(_Client(exc), "runlens").insert_columns("events", {"a": ["x"]}, "tok")
    assert type(caught.value) is kind and caught.value.server_code == code


def test_an_insert_given_up_at_the_gate_writes_nothing():
    """``proceed`` is asked after the gate let the insert pass: False writes nothing and leaves the
    gate (a fence can then be acknowledged)."""
    gate = WriteGate()
    gate.open_until(float("inf"))
    client = _Client(AssertionError("nothing may be written"))
    with pytest.raises(InsertAbandoned):
        Warehouse(client, "runlens", gate=gate).insert_columns("events", {"a": ["x"]}, "tok", proceed=lambda: False)
    gate.close("a migration")
    assert gate.drained(timeout=0.1)
