"""The emitter library a workflow engine embeds, against the real broker and worker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from embedded.processes import free_port
from producers.emitter import RunContext, RunEmitter, StepRef
from producers.kafka import BrokerUnavailable
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


def test_emitted_lifecycle_becomes_one_run_with_steps(embedded_stack, stack_settings, reader):
    t0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
    run = RunContext(account_id="emit-acct", run_id="emit-r1", workflow_id="wf-sync",
                     workflow_name="Lead sync", workflow_version=2, workflow_type="integration",
                     trigger="api", site_id="s9")
    step = StepRef(step_id="s-crm", step_index=0, step_name="Push to CRM", step_type="action")
    with RunEmitter(embedded_stack.brokers, stack_settings.events_topic) as emit:
        emit.run_queued(run, ts=t0)
        emit.run_started(run, ts=t0 + timedelta(seconds=2))
        emit.step_started(run, step, ts=t0 + timedelta(seconds=2))
        emit.step_finished(run, step, "success", started_at=t0 + timedelta(seconds=2),
                           ts=t0 + timedelta(seconds=3, milliseconds=500), action_kind="crm_sync",
                           target="contact:17", output={"crm_id": "c-17"})
        emit.run_finished(run, "success", started_at=t0 + timedelta(seconds=2), ts=t0 + timedelta(seconds=4))
        assert emit.flush() == 5

    row = wait_for(lambda: reader.query(
        "SELECT status, queue_ms, duration_ms, workflow_type, trigger FROM runs WHERE run_id = 'emit-r1'"
    ).result_rows, lambda rows: rows and rows[0][0] == "success", what="the emitted run")
    assert row == [("success", 2000, 2000, "integration", "api")]
    steps = reader.query("SELECT step_name, status, duration_ms, action_kind, target, output FROM steps "
                         "WHERE run_id = 'emit-r1'").result_rows
    assert steps == [("Push to CRM", "success", 1500, "crm_sync", "contact:17", '{"crm_id":"c-17"}')]


def test_emitter_rejects_invalid_event_before_sending(embedded_stack, stack_settings):
    run = RunContext(account_id="a", run_id="r", workflow_id="w", workflow_name="W",
                     workflow_version=1, workflow_type="blog", trigger="api")
    with RunEmitter(embedded_stack.brokers, stack_settings.events_topic) as emit:
        with pytest.raises(ValueError, match="workflow_type"):
            emit.run_queued(run)
        assert emit.flush() == 0


@pytest.mark.timeout(60)  # a hang fails the test instead of stalling the suite
def test_unreachable_broker_is_a_clear_error_not_a_hang():
    with pytest.raises(BrokerUnavailable, match="cannot reach Kafka at 127.0.0.1"):
        RunEmitter(f"127.0.0.1:{free_port()}")


def _lifecycle(emit: RunEmitter, run: RunContext, t0: datetime) -> None:
    emit.run_queued(run, ts=t0)
    emit.run_started(run, ts=t0 + timedelta(seconds=1))
    emit.run_finished(run, "success", started_at=t0 + timedelta(seconds=1), ts=t0 + timedelta(seconds=3))


def test_a_lone_event_goes_out_within_the_linger_without_a_flush(embedded_stack, stack_settings, reader):
    t0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    run = RunContext(account_id="emit-acct", run_id="emit-linger", workflow_id="wf-sync",
                     workflow_name="Lead sync", workflow_version=2, workflow_type="integration", trigger="api")
    emit = RunEmitter(embedded_stack.brokers, stack_settings.events_topic, linger=0.05)
    try:
        _lifecycle(emit, run, t0)
        # no flush: the batcher's own thread must send the buffered events
        row = wait_for(lambda: reader.query("SELECT status FROM runs WHERE run_id = 'emit-linger'").result_rows,
                       lambda rows: rows == [("success",)], what="the lingering run", timeout=30)
        assert row == [("success",)]
        assert emit._producer.delivered == 3 and emit._batcher.records == 1
    finally:
        emit.close()


def test_one_record_per_event_mode_sends_each_event_as_its_own_record(embedded_stack, stack_settings, reader):
    t0 = datetime(2026, 11, 21, 11, 0, tzinfo=UTC)
    run = RunContext(account_id="emit-acct", run_id="emit-single", workflow_id="wf-sync",
                     workflow_name="Lead sync", workflow_version=2, workflow_type="integration", trigger="api")
    with RunEmitter(embedded_stack.brokers, stack_settings.events_topic, one_record_per_event=True) as emit:
        _lifecycle(emit, run, t0)
        assert emit.flush() == 3
    rows = wait_for(lambda: reader.query("SELECT count(), uniqExact(source_offset) FROM events "
                                         "WHERE run_id = 'emit-single'").result_rows,
                    lambda rows: rows[0][0] == 3, what="three stored events")
    assert rows == [(3, 3)]
