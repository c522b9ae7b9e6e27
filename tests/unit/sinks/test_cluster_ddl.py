"""Cluster mode of the migrations (``sinks/cluster.py``): every migration that exists, rendered
``ON CLUSTER`` with Replicated engines, and stripped back to exactly the single-node DDL.

chDB cannot run Replicated engines (``Can't create replicated table without ZooKeeper``: it has
no Keeper), so the warehouse checks are: ClickHouse's parser (in chDB) reads every cluster statement,
with its ON CLUSTER and Replicated engine arguments; and the cluster form stripped back to one
node, run on a fresh chDB, builds exactly the schema of ``sinks/schema.sql``."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from sinks import schema
from sinks.clickhouse import bookkeeping_statements, migration_files, migration_statements
from sinks.cluster import (
    REPLICA_NAME,
    ZOOKEEPER_PATH,
    ClusterDDLError,
    on_cluster,
    replicated_engines,
    single_node,
)

CLUSTER = "runlens_cluster"
DB = "runlens"
DDL = re.compile(r"^\s*(CREATE|ALTER|DROP|TRUNCATE|RENAME|EXCHANGE)\b", re.IGNORECASE)
MERGE_TREE = re.compile(r"\bENGINE\s*=\s*(\w*MergeTree)\b", re.IGNORECASE)
REPLICATED_PREFIX = f"('{ZOOKEEPER_PATH}', '{REPLICA_NAME}'"


def _pairs() -> list[tuple[str, str, str]]:
    """(migration, single-node statement, cluster statement) of every statement ``migrate`` runs."""
    pairs = [("bookkeeping", s, on_cluster(s, CLUSTER)) for s in bookkeeping_statements(DB)]
    single = migration_statements(DB)
    clustered = migration_statements(DB, CLUSTER)
    assert [v for v, _, _ in single] == [v for v, _, _ in clustered] == [v for v, _, _ in migration_files()]
    for (_, name, plain), (_, _, rendered) in zip(single, clustered, strict=True):
        assert len(plain) == len(rendered), name
        pairs += [(name, a, b) for a, b in zip(plain, rendered, strict=True)]
    return pairs


PAIRS = _pairs()


def test_every_migration_is_rendered():
    names = {name for name, _, _ in PAIRS}
    assert names == {"bookkeeping"} | {name for _, name, _ in migration_files()}
    assert sum(1 for _, plain, _ in PAIRS if MERGE_TREE.search(plain)) >= 10


@pytest.mark.parametrize(("migration", "plain", "rendered"), PAIRS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(PAIRS)])
def test_each_statement_in_cluster_form(migration, plain, rendered):
    if DDL.match(plain):
        assert len(re.findall(rf"\bON CLUSTER {CLUSTER}\b", rendered)) == 1, rendered[:200]
        # right after the object's name (before its columns, TO, AS or the alteration)
        head = re.match(r"^\s*(?:CREATE|ALTER|DROP)\b.*?\b" + DB + r"(?:\.`?\w+`?)?\s+ON CLUSTER", rendered, re.S)
        assert head and "(" not in head.group(0), rendered[:200]
    else:
        assert plain.lstrip().upper().startswith(("INSERT", "SELECT", "WITH")), plain[:80]
        assert rendered == plain, "data statements run on one replica and replicate"
    engines = MERGE_TREE.findall(plain)
    replicated = replicated_engines(rendered)
    assert len(replicated) == len(engines) == len(MERGE_TREE.findall(rendered))
    for engine, clause in zip(engines, replicated, strict=True):
        assert clause.startswith(f"ENGINE = Replicated{engine}{REPLICATED_PREFIX}"), clause
    for setting in re.findall(r"non_replicated_deduplication_window = \d+", plain):
        assert setting[len("non_"):] in rendered and setting not in rendered
    assert single_node(rendered) == plain, "rendering then stripping gives back the single-node DDL"


def test_engine_arguments_are_kept_after_the_replication_arguments():
    events = next(r for _, p, r in PAIRS if re.search(rf"CREATE TABLE IF NOT EXISTS {DB}\.events\b", p))
    assert replicated_engines(events) == [
        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}', "
        "ingested_at)"]
    assert "SETTINGS replicated_deduplication_window = 1000" in events
    bookkeeping = on_cluster(bookkeeping_statements(DB)[1], CLUSTER)
    assert f"{DB}.schema_migrations ON CLUSTER {CLUSTER} (" in bookkeeping
    assert "ReplicatedReplacingMergeTree(" in bookkeeping
    database = on_cluster(bookkeeping_statements(DB)[0], CLUSTER)
    assert database == f"CREATE DATABASE IF NOT EXISTS {DB} ON CLUSTER {CLUSTER}"


@pytest.mark.parametrize(("plain", "rendered"), [
    ("CREATE TABLE db.t (a UInt8, b UInt64) ENGINE=SummingMergeTree((b)) ORDER BY a",
     "CREATE TABLE db.t ON CLUSTER c (a UInt8, b UInt64) ENGINE=ReplicatedSummingMergeTree("
     f"'{ZOOKEEPER_PATH}', '{REPLICA_NAME}', (b)) ORDER BY a"),
    ("CREATE TABLE IF NOT EXISTS `db`.`t` AS db.u ENGINE = MergeTree ORDER BY tuple()",
     f"CREATE TABLE IF NOT EXISTS `db`.`t` ON CLUSTER c AS db.u ENGINE = ReplicatedMergeTree('{ZOOKEEPER_PATH}', "
     f"'{REPLICA_NAME}') ORDER BY tuple()"),
    ("CREATE TABLE db.m (a UInt8) ENGINE = Memory", "CREATE TABLE db.m ON CLUSTER c (a UInt8) ENGINE = Memory"),
    ("CREATE MATERIALIZED VIEW db.v TO db.t AS SELECT 1 AS a",
     "CREATE MATERIALIZED VIEW db.v ON CLUSTER c TO db.t AS SELECT 1 AS a"),
    ("ALTER TABLE db.t MODIFY TTL d + INTERVAL 1 DAY", "ALTER TABLE db.t ON CLUSTER c MODIFY TTL d + INTERVAL 1 DAY"),
    ("DROP TABLE IF EXISTS db.t", "DROP TABLE IF EXISTS db.t ON CLUSTER c"),
    ("TRUNCATE TABLE db.t", "TRUNCATE TABLE db.t ON CLUSTER c"),
    ("RENAME TABLE db.a TO db.b", "RENAME TABLE db.a TO db.b ON CLUSTER c"),
    ("EXCHANGE TABLES db.a AND db.b", "EXCHANGE TABLES db.a AND db.b ON CLUSTER c"),
    ("INSERT INTO db.t SELECT 1", "INSERT INTO db.t SELECT 1"),
])
def test_statement_forms(plain, rendered):
    assert on_cluster(plain, "c") == rendered
    assert single_node(rendered) == plain


@pytest.mark.parametrize("statement", [
    "SYSTEM SYNC REPLICA db.t",
    "OPTIMIZE TABLE db.t FINAL",
    "CREATE TABLE db.t ON CLUSTER other (a UInt8) ENGINE = MergeTree ORDER BY a",
    "CREATE TABLE db.t (a UInt8) ENGINE = ReplicatedMergeTree('/p', 'r') ORDER BY a",
    "CREATE TABLE db.t (a UInt8) ENGINE = MergeTree ORDER BY a SETTINGS replicated_deduplication_window = 5",
    "CREATE TABLE db.t (a UInt8) ENGINE = MergeTree(a ORDER BY a",
])
def test_statements_without_a_sound_cluster_form_are_refused(statement):
    with pytest.raises(ClusterDDLError):
        on_cluster(statement, "c")


@pytest.mark.parametrize("name", ["", "a b", "c;DROP", "1c", "x" * 64, "`c`"])
def test_cluster_names_are_identifiers(name):
    with pytest.raises(ValueError, match="invalid cluster name"):
        on_cluster("DROP TABLE db.t", name)


def test_cluster_form_stripped_back_builds_the_committed_schema_on_chdb():
    """chDB cannot create Replicated tables (no Keeper): the cluster form, stripped back to one
    node, is run on a fresh chDB and must build exactly the schema of sinks/schema.sql."""
    assert schema.render(through_cluster=CLUSTER) == schema.SNAPSHOT.read_text()


# ClickHouse's own parser, in a child process (chDB allows one data path per process): each
# statement from stdin (a JSON list) formatted by formatQuerySingleLine, or the parser's error.
_PARSE = r"""
import json, sys, chdb
out = []
for statement in json.load(sys.stdin):
    literal = "'" + statement.replace("\\", "\\\\").replace("'", "\\'") + "'"
    try:
        out.append(chdb.query("SELECT formatQuerySingleLine(" + literal + ")", "TabSeparatedRaw").bytes().decode())
    except Exception as exc:
        out.append("ERROR " + str(exc).splitlines()[0])
json.dump(out, sys.stdout)
"""


def test_clickhouse_parses_every_cluster_statement():
    """The cluster form is ClickHouse syntax (its parser, not our regexes, reads ON CLUSTER and the
    Replicated engines' arguments), though chDB cannot execute it."""
    statements = [rendered for _, _, rendered in PAIRS]
    done = subprocess.run([sys.executable, "-c", _PARSE], input=json.dumps(statements), capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    formatted = json.loads(done.stdout)
    assert len(formatted) == len(statements)
    for statement, parsed in zip(statements, formatted, strict=True):
        assert not parsed.startswith("ERROR"), f"{parsed}\n{statement[:300]}"
        if DDL.match(statement):
            assert f" ON CLUSTER {CLUSTER}" in parsed, parsed[:200]
        for engine in MERGE_TREE.findall(statement):
            assert f"ENGINE = {engine}('{ZOOKEEPER_PATH}', '{REPLICA_NAME}'" in parsed, parsed[-300:]


def test_migrate_refuses_a_cluster_on_the_embedded_warehouse(run_cli, tmp_path):
    code, _, err = run_cli("migrate", env={"RUNLENS_DATA_DIR": str(tmp_path), "RUNLENS_WAREHOUSE_DSN": None,
                                           "RUNLENS_CLICKHOUSE_CLUSTER": "runlens_cluster"})
    assert code == 1 and err.strip().splitlines() == [
        "runlens: error: RUNLENS_CLICKHOUSE_CLUSTER needs a ClickHouse server (RUNLENS_WAREHOUSE_DSN): "
        "the embedded warehouse is one node"]
