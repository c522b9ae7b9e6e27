"""The read-path policy (``embedded.read_policy``) on a real chDB warehouse in this process, where
a test can do what a reader of the embedded stack cannot: create a second database, set tight
limits, hold the only query slot, and open the same ClickHouse connection the policy opens to
see which refusals are ClickHouse's own (readonly=1) and which only the statement check makes.

chDB hosts one data path per process: every test here shares the module's warehouse and the
module closes it at the end, so the path is free again for whatever runs next.
"""

from __future__ import annotations

import base64
import http.client
import threading
from urllib.parse import urlsplit

import chdb
import pytest

from embedded.access import Credentials, EngineError, Refused
from embedded.read_policy import ReadLimits, ReadPolicy
from embedded.warehouse_server import WarehouseServer
from tests.helpers import wait_for

pytestmark = [pytest.mark.security]

DB = "runlens_policy"
TIGHT = ReadLimits(max_execution_seconds=1, max_memory_bytes=64 * 2**20, max_result_rows=1000,
                   max_result_bytes=2**20, max_request_bytes=64 * 1024, max_concurrent_queries=1)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    """A warehouse with runlens' database and another one, owned (written) by this process."""
    path = str(tmp_path_factory.mktemp("policy") / "warehouse")
    owner = chdb.connect(path)
    for statement in (f"CREATE DATABASE {DB}", "CREATE DATABASE other",
                      f"CREATE TABLE {DB}.runs (run_id String, n UInt32) ENGINE = MergeTree ORDER BY run_id",
                      f"INSERT INTO {DB}.runs VALUES ('r1', 1), ('r2', 2)",
                      "CREATE TABLE other.secrets (s String) ENGINE = MergeTree ORDER BY s",
                      "INSERT INTO other.secrets VALUES ('other-tenant-secret')"):
        owner.query(statement)
    yield path
    owner.close()


@pytest.fixture(scope="module")
def policy(warehouse):
    policy = ReadPolicy(warehouse, DB, TIGHT)
    yield policy
    policy.close()


def run(policy: ReadPolicy, sql: str, **params: str) -> bytes:
    return policy.run(sql, "TabSeparated", params).data


def code_of(call) -> int:
    try:
        call()
    except (Refused, EngineError) as exc:
        return exc.code
    raise AssertionError("not refused")


def test_another_database_is_unreadable_whichever_way_it_is_named(policy):
    for sql in ("SELECT * FROM other.secrets", "SELECT * FROM runs JOIN other.secrets ON 1",
                "SELECT (SELECT any(s) FROM other.secrets)", "SELECT * FROM runs WHERE run_id IN other.secrets",
                "SELECT * FROM runs WHERE run_id GLOBAL NOT IN other.secrets",
                "WITH x AS (SELECT * FROM other.secrets) SELECT * FROM x",
                "SELECT * FROM (SELECT * FROM (SELECT * FROM other.secrets))",
                "DESCRIBE TABLE other.secrets", "SHOW CREATE TABLE other.secrets", "SHOW TABLES FROM other",
                "EXPLAIN SELECT * FROM other.secrets", "SELECT * FROM `other`.`secrets`",
                "SELECT * FROM `other.secrets`", "SELECT * FROM runs UNION ALL SELECT s, 0 FROM other.secrets"):
        assert code_of(lambda sql=sql: run(policy, sql)) == 497, sql
    assert code_of(lambda: run(policy, "SELECT * FROM {t:Identifier}", t="other.secrets")) == 497
    assert code_of(lambda: run(policy, "SELECT * FROM {d:Identifier}.secrets", d="other")) == 497
    # controls: the same shapes over runlens' own table
    assert run(policy, "SELECT n FROM runs WHERE run_id IN (SELECT run_id FROM runs) ORDER BY n") == b"1\n2\n"
    assert run(policy, f"SELECT count() FROM {DB}.runs") == b"2\n"
    assert run(policy, "SELECT count() FROM {t:Identifier}", t="runs") == b"2\n"
    assert run(policy, "SHOW TABLES") == b"runs\n"


def test_the_limits_hold_and_are_enforced_by_clickhouse(policy):
    assert code_of(lambda: run(policy, "SELECT number FROM numbers(1001)")) == 396          # rows
    assert run(policy, "SELECT count() FROM (SELECT number FROM numbers(1000))") == b"1000\n"
    assert code_of(lambda: run(policy, "SELECT repeat(toString(number), 2000) FROM numbers(900)")) == 396   # bytes
    assert code_of(lambda: run(policy, "SELECT groupArray(number) FROM numbers(50000000)")) == 241   # memory
    assert code_of(lambda: run(policy, "SELECT sum(cityHash64(number)) FROM numbers(100000000000)")) == 159  # time
    for clause in ("max_result_rows = 0", "max_memory_usage = 0", "max_execution_time = 0", "readonly = 0"):
        assert code_of(lambda clause=clause: run(policy, f"SELECT 1 SETTINGS {clause}")) == 164, clause


def test_readonly_is_clickhouses_first_wall_and_the_check_covers_what_it_lets_through(policy, tmp_path):
    """On the very connection the policy opens (readonly=1 and the limits), ClickHouse itself
    refuses writes, table functions reaching outside and setting changes; it lets INTO OUTFILE,
    file() and KILL QUERY through, which is why the statement check exists. The policy refuses
    all of them."""
    outfile = tmp_path / "written-by-readonly.tsv"
    with policy.connection() as conn:
        conn.query(f"USE {DB}")
        for sql in ("DROP TABLE runs", "INSERT INTO runs VALUES ('x', 9)", "CREATE TEMPORARY TABLE t (a UInt8)",
                    "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')", "SET max_result_rows = 0",
                    "SELECT * FROM file('/etc/passwd', 'LineAsString')"):
            with pytest.raises(Exception, match="readonly mode"):
                conn.query(sql)
        assert b"root:" in conn.query("SELECT file('/etc/passwd')", "TabSeparated").bytes()
        conn.query(f"SELECT 1 INTO OUTFILE '{outfile}'")
        assert outfile.exists()
    outfile.unlink()
    for sql, code in ((f"SELECT 1 INTO OUTFILE '{outfile}'", 358), ("SELECT file('/etc/passwd')", 446),
                      ("KILL QUERY WHERE 1", 164), ("SYSTEM STOP MERGES", 164)):
        assert code_of(lambda sql=sql: run(policy, sql)) == code, sql
    assert not outfile.exists()


def test_session_state_never_outlives_a_request(policy):
    assert run(policy, "SELECT getSetting('join_use_nulls') SETTINGS join_use_nulls = 1") == b"true\n"
    assert run(policy, "SELECT getSetting('join_use_nulls'), currentDatabase()") == f"false\t{DB}\n".encode()
    for sql in ("USE other", "SET limit = 1", "CREATE TEMPORARY TABLE runs (x UInt8)"):
        assert code_of(lambda sql=sql: run(policy, sql)) == 164
    assert run(policy, "SELECT count() FROM runs") == b"2\n"


@pytest.fixture
def endpoint(warehouse, policy):
    server = WarehouseServer(warehouse, database=DB, reader=Credentials.generate(),
                          limits=ReadLimits(max_concurrent_queries=1))
    server.start()
    yield server
    server.stop()


def _post(endpoint: WarehouseServer, sql: str) -> tuple[int, bytes]:
    parts = urlsplit(endpoint.url)
    token = base64.b64encode(f"{endpoint.reader.user}:{endpoint.reader.password}".encode()).decode()
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request("POST", "/", body=sql.encode(), headers={"Authorization": f"Basic {token}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_query_beyond_the_concurrency_limit_gets_503_at_once(endpoint):
    slow: list[tuple[int, bytes]] = []
    thread = threading.Thread(target=lambda: slow.append(_post(endpoint, "SELECT sleep(3)")))
    thread.start()
    try:
        wait_for(lambda: endpoint.policy.in_flight, lambda n: n == 1, timeout=30, interval=0.02,
                 what="the slow query to hold the only slot")
        status, body = _post(endpoint, "SELECT 1")
        assert status == 503 and body.startswith(b"Code: 202."), body
    finally:
        thread.join()
    assert slow == [(200, b"0\n")]
    assert _post(endpoint, "SELECT 1") == (200, b"1\n")


def test_a_chdb_client_opened_read_only_cannot_write(warehouse, policy):
    """``sinks.clickhouse.connect(readonly=True)`` on a chdb:// DSN: ClickHouse refuses the write."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    from sinks.clickhouse import connect

    reader = connect(f"chdb://{warehouse}", database=DB, readonly=True)
    try:
        with pytest.raises(DatabaseError, match="readonly"):
            reader.command(f"DROP TABLE {DB}.runs")
        assert reader.query(f"SELECT count() FROM {DB}.runs").result_rows == [(2,)]
    finally:
        reader.close()
