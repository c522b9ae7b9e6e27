"""What publishing the contract's sample file must produce, whatever broker and warehouse.

Scoped to the sample's runs (r1, r2) and to dead letters from the sample file, so other tests
may share the database.
"""

from __future__ import annotations

from tests.helpers import wait_for

_SAMPLE_RUNS = "account_id = 'acme' AND run_id IN ('r1', 'r2')"


def wait_for_sample(client, source: str, timeout: float = 90) -> None:
    wait_for(lambda: client.query(
        f"SELECT (SELECT count() FROM runs WHERE {_SAMPLE_RUNS}), "
        f"(SELECT count() FROM steps WHERE {_SAMPLE_RUNS}), "
        "(SELECT count() FROM rejected_events WHERE source = {source:String}), "
        f"(SELECT countIf(status = 'failed') FROM runs WHERE {_SAMPLE_RUNS})",
        parameters={"source": source}).result_rows[0],
        lambda counts: counts == (2, 2, 2, 1), timeout=timeout, what="the sample to be ingested")


def assert_sample_ingested(client, source: str) -> None:
    runs = {r["run_id"]: r for r in client.query(
        f"SELECT * FROM runs WHERE {_SAMPLE_RUNS} ORDER BY run_id").named_results()}
    assert set(runs) == {"r1", "r2"}
    r1, r2 = runs["r1"], runs["r2"]
    assert (r1["status"], r1["error_code"], r1["error_class"]) == ("failed", "CRM_TIMEOUT", "external_service")
    assert (r1["queue_ms"], r1["duration_ms"]) == (250, 30050)
    assert (r1["workflow_id"], r1["workflow_version"], r1["trigger"]) == ("wf-welcome", 3, "automatic")
    assert (r2["status"], r2["replay_of"], r2["started_at"], r2["queue_ms"]) == ("pending", "r1", None, None)

    steps = client.query("SELECT step_id, status, duration_ms, error_code FROM steps "
                         f"WHERE {_SAMPLE_RUNS} ORDER BY run_id, step_index").result_rows
    assert steps == [("st1", "success", 10, None), ("st2", "failed", 30000, "CRM_TIMEOUT")]

    # e7 was delivered twice: the run is finished once, its event stored once.
    assert client.query(f"SELECT count() FROM runs WHERE {_SAMPLE_RUNS} AND status = 'failed'"
                        ).result_rows == [(1,)]
    assert client.query(f"SELECT uniqExact(event_id), countIf(event_id = 'e7') FROM events FINAL "
                        f"WHERE {_SAMPLE_RUNS}").result_rows == [(8, 1)]

    rejected = client.query("SELECT source_offset, field, reason FROM rejected_events "
                            "WHERE source = {source:String} ORDER BY source_offset",
                            parameters={"source": source}).result_rows
    assert [(offset, field) for offset, field, _ in rejected] == [(10, None), (11, "type")]
    assert "not valid JSON" in rejected[0][2] and "run.exploded" in rejected[1][2]
