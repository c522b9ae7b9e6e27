"""``sinks.clickhouse.insert_type``: what an insert declares its columns as. LowCardinality
columns go as their plain type (the server builds the dictionary); every other type as itself."""

from __future__ import annotations

from sinks.clickhouse import insert_type


def test_low_cardinality_columns_are_sent_as_their_plain_type():
    assert insert_type("LowCardinality(String)") == "String"
    assert insert_type("LowCardinality(Nullable(String))") == "Nullable(String)"


def test_other_types_are_sent_as_they_are():
    for column_type in ("String", "Nullable(String)", "DateTime64(3, 'UTC')", "Nullable(DateTime64(3, 'UTC'))",
                        "UInt32", "Array(LowCardinality(String))", "Map(LowCardinality(String), String)"):
        assert insert_type(column_type) == column_type
