"""What publishing the contract's sample file must produce, whatever broker and warehouse."""

from __future__ import annotations

from tests.helpers import wait_for


def wait_for_sample(client, timeout: float = 90) -> None:
    wait_for(lambda: client.query(
        "SELECT (SELECT count() FROM runs), (SELECT count() FROM steps), "
        "(SELECT count() FROM rejected_events), "
        "(SELECT countIf(status = 'failed') FROM runs)").result_rows[0],
        lambda counts: counts == (2, 2, 2, 1), timeout=timeout, what="the sample to be ingested")


def assert_sample_ingested(client) -> None:
    runs = {r["run_id"]: r for r in client.query("SELECT * FROM runs ORDER BY run_id").named_results()}
    assert set(runs) == {"r1", "r2"}
    r1, r2 = runs["r1"], runs["r2"]
    assert (r1["status"], r1["error_code"], r1["error_class"]) == ("failed", "CRM_TIMEOUT", "external_service")
    assert (r1["queue_ms"], r1["duration_ms"]) == (250, 30050)
    assert (r1["workflow_id"], r1["workflow_version"], r1["trigger"]) == ("wf-welcome", 3, "automatic")
    assert (r2["status"], r2["replay_of"], r2["started_at"], r2["queue_ms"]) == ("pending", "r1", None, None)

    steps = client.query("SELECT step_id, status, duration_ms, error_code FROM steps "
                         "WHERE run_id = 'r1' ORDER BY step_index").result_rows
    assert steps == [("st1", "success", 10, None), ("st2", "failed", 30000, "CRM_TIMEOUT")]

    # e7 was delivered twice: the run is finished once, counted once.
    assert client.query("SELECT count() FROM runs WHERE status = 'failed'").result_rows == [(1,)]
    assert client.query("SELECT uniqExact(event_id), countIf(event_id = 'e7') FROM events FINAL"
                        ).result_rows == [(9 - 1, 1)]

    rejected = client.query("SELECT source_offset, field, reason FROM rejected_events ORDER BY source_offset"
                            ).result_rows
    assert [(offset, field) for offset, field, _ in rejected] == [(10, None), (11, "type")]
    assert "not valid JSON" in rejected[0][2] and "run.exploded" in rejected[1][2]
