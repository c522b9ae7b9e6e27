"""What the worker (``streams.app``) needs to know, and nothing else. Built by the composition
root (``runlens.worker.worker_config``) from the process settings, which streams never reads.
No defaults: every value comes from there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    consumer_group: str
    events_topic: str
    dead_letter_topic: str
    alerts_topic: str
    detector_topic: str              # run signals keyed by account (streams.signals), as many partitions as events
    commands_topic: str              # replay/stop commands, stored in run_commands (streams.commands)
    command_outcomes_topic: str      # the engine's outcomes, stored in run_command_outcomes
    data_dir: Path                   # Faust keeps its state under <data_dir>/faust
    partitions: int                  # of the topics the app declares
    replication_factor: int
    batch_max_records: int           # most Kafka records per batch
    batch_max_seconds: float         # longest wait to fill a batch
    batch_idle_seconds: float        # a batch closes when no record arrived for this long
    insert_max_rows: int             # most events per warehouse insert
    max_event_bytes: int             # larger events are dead-lettered as oversize
    max_clock_skew_seconds: float    # events further ahead of the worker's clock are dead-lettered
    alert_lateness_seconds: float    # how long the detectors wait for late events
    alert_idle_seconds: float        # quiet input this long: the account's watermark follows the wall clock
    alert_webhook_url: str | None    # POST every alert state change here
    metrics_interval_seconds: float  # how often pipeline health is recorded
    alert_deadlines: str | None = None   # run_deadline limits: JSON {"account/workflow" or "workflow": "10m"}
    fault_drop_batch_every: int = 0      # test hook: drop every Nth batch / packet as Faust can (streams.continuity)
