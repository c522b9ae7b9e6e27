"""``sinks/schema.sql`` is the warehouse schema the migrations build, regenerated and compared
here (a fresh chDB in a child process), like the dashboards' committed JSON."""

from __future__ import annotations

import re

from sinks import schema


def test_committed_schema_snapshot_is_current():
    assert schema.SNAPSHOT.is_file(), "run `python -m sinks.schema`: sinks/schema.sql is missing"
    fresh = schema.render()
    assert schema.SNAPSHOT.read_text() == fresh, "run `python -m sinks.schema`: sinks/schema.sql is stale"


def test_snapshot_lists_every_object_after_what_it_reads():
    text = schema.SNAPSHOT.read_text()
    names = re.findall(r"^CREATE (?:TABLE|MATERIALIZED VIEW|VIEW) runlens\.(\w+)", text, re.M)
    assert names[0] == "schema_migrations" and len(names) == len(set(names))
    assert set(names) <= set(schema.creation_order())   # less what later migrations dropped
    for i, name in enumerate(names):   # every object it names was created before it
        body = text.split(f" runlens.{name}", 1)[1].split("\nCREATE ", 1)[0]
        for later in names[i + 1:]:
            assert not re.search(rf"\brunlens\.{later}\b", body), f"{name} reads {later}, created after it"
