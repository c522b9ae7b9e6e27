"""The one settings object, read from ``RUNLENS_*`` environment variables.

Built once at the entrypoint and passed down; nothing else reads the environment.
Left unset, the broker and warehouse addresses mean "the embedded stack": commands find
a running ``runlens up`` through the stack file in the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The URL redaction lives below every package that needs it; re-exported for existing callers.
from schemas.redaction import MASK as MASK
from schemas.redaction import redact_text as redact_text
from schemas.redaction import redact_url as redact_url
from schemas.redaction import url_secrets as url_secrets

if TYPE_CHECKING:
    from embedded.config import StackConfig


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNLENS_", extra="ignore")

    data_dir: Path = Field(
        default=Path(".runlens"),
        description="Where the embedded stack keeps its warehouse, logs and stack file.",
    )
    brokers: str | None = Field(
        default=None,
        description="Kafka bootstrap servers (host:port,...). Unset: the embedded broker of a running `runlens up`.",
    )
    warehouse_dsn: str | None = Field(
        default=None,
        description="ClickHouse DSN the workers write through: http(s)://user:pass@host:8123. Unset: the "
        "embedded warehouse process of a running `runlens up` (chDB in <data_dir>/warehouse). A chdb:///path DSN "
        "opens chDB inside the worker (unit tests only: one process may hold the directory).",
    )
    query_url: str | None = Field(
        default=None,
        description="Where read-only commands (query, stats) send SQL. Unset: the warehouse DSN when it "
        "is set, else the embedded warehouse process of a running `runlens up` (as its reader).",
    )
    warehouse_password: SecretStr | None = Field(default=None, description="Overrides the password in the DSN.")
    database: str = Field(default="runlens", description="ClickHouse database holding runlens tables and views.")
    clickhouse_cluster: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", description="Name of the ClickHouse cluster "
        "(remote_servers) the warehouse DSN's server belongs to: `runlens migrate` then creates every table and "
        "view ON CLUSTER with Replicated engines (sinks/cluster.py). Unset: one server (or the embedded warehouse).")
    topic_prefix: str = Field(default="runlens", description="Prefix of every Kafka topic and of the consumer group.")
    partitions: int = Field(default=4, ge=1, description="Partitions of the events topic when runlens creates it.")
    replication_factor: int = Field(default=1, ge=1, description="Replication factor of topics runlens creates.")
    batch_max_records: int = Field(
        default=400, ge=1, le=400, description="Most Kafka records the worker takes per batch (a record holds one "
        "event, or up to 500 when the producer batches). At most 400: a redelivered batch must fit in the "
        "ledger's 200,000-event horizon to be recognised exactly.")
    insert_max_rows: int = Field(default=50_000, ge=100, description="Most rows per warehouse insert.")
    batch_max_seconds: float = Field(default=0.5, gt=0, description="Longest the worker waits to fill a batch.")
    batch_idle_seconds: float = Field(
        default=0.02, gt=0, le=5, description="A batch closes when no record arrived for this long (the partitions "
        "have nothing more ready), without waiting for batch_max_seconds.")
    max_event_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Larger events are dead-lettered as oversize.")
    max_clock_skew_seconds: float = Field(
        default=300.0, ge=0, description="Event times (ts, started_at, resumed_at) further ahead of the worker's clock "
        "than this are dead-lettered when received.")
    warehouse_port: int = Field(
        default=0, ge=0, le=65535, description="Port of the embedded warehouse process (0 = any free port).")
    read_password: SecretStr | None = Field(
        default=None, description="Password of the embedded warehouse's reader, runlens_reader. Unset: `runlens up` "
        "generates one per stack and keeps it in the stack file (owner-only); a warehouse started alone "
        "without it serves no reader.")
    write_password: SecretStr | None = Field(
        default=None, description="Password of the embedded warehouse's writer, runlens_writer (the workers). "
        "Unset: `runlens up` generates one per stack and hands it to its workers.")
    schema_wait_seconds: float = Field(
        default=300.0, gt=0, description="How long a worker waits for the warehouse schema it needs (applied by the "
        "embedded warehouse process or `runlens migrate`) before it gives up.")
    migrate_fence_seconds: float = Field(
        default=120.0, gt=0, description="How long `runlens migrate` waits for every running worker to pause "
        "its inserts (the migration fence) before it gives up without migrating.")
    workers: int = Field(
        default=1, ge=1, le=32, description="Stream workers `runlens up` runs in one consumer group.")
    read_max_execution_seconds: float = Field(
        default=60.0, gt=0, description="Warehouse reader: longest a query may run (max_execution_time).")
    read_max_memory_bytes: int = Field(
        default=2 * 2**30, ge=2**20, description="Warehouse reader: most memory one query may use "
        "(max_memory_usage).")
    read_max_result_rows: int = Field(
        default=10_000_000, ge=1, description="Warehouse reader: most rows a result may have (max_result_rows; "
        "more is an error, not a cut). `runlens export` of more runs needs it raised.")
    read_max_result_bytes: int = Field(
        default=2 * 2**30, ge=2**20, description="Warehouse reader: largest result, uncompressed "
        "(max_result_bytes).")
    read_max_request_bytes: int = Field(
        default=2**20, ge=4096, description="Warehouse reader: largest request body (query text and parameters).")
    read_max_concurrent_queries: int = Field(
        default=4, ge=1, description="Warehouse reader: queries at once; more get HTTP 503 (clients retry).")
    broker_port: int = Field(default=0, ge=0, le=65535, description="Port of the embedded broker (0 = any free port).")
    broker_storage: str = Field(
        default="memory://tansu/", description="Storage engine of the embedded broker (Tansu --storage-engine): "
        "memory://tansu/ (lost when the broker stops) or a durable engine such as s3://BUCKET/ (endpoint and "
        "credentials from AWS_* variables).")
    log_level: str = Field(default="WARNING", description="Worker log level.")
    metrics_interval_seconds: float = Field(
        default=5.0, gt=0, description="How often the worker records pipeline health in pipeline_metrics.")
    alert_lateness_seconds: float = Field(
        default=120.0, ge=0, description="How long the detectors wait for late events before judging a minute.")
    alert_idle_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="When an account's input has been quiet this long (its partitions "
        "read to their end, nothing of it arriving), its alert watermark follows the wall clock: the last minutes "
        "before traffic stops are judged, and a silent workflow is noticed.")
    alert_webhook_url: str | None = Field(default=None, description="POST every alert state change here as JSON.")
    alert_deadlines: str | None = Field(
        default=None, description="Run deadlines of the run_deadline alert, a JSON object: keys "
        "'account/workflow_id' or 'workflow_id', values seconds or '90s', '10m', '2h' (default: 1.5 x the "
        "workflow's p99 duration).")
    # Fault injection for the reliability suite; leave unset in production.
    fault_lose_reply_every: int = Field(
        default=0, ge=0, description="Test hook: after every Nth stored insert, act as if its reply was lost.")
    fault_drop_batch_every: int = Field(
        default=0, ge=0, description="Test hook: the worker drops every Nth batch of the events topic and every "
        "Nth packet of the detector topic unhandled and unacknowledged, as Faust can (streams.continuity).")
    fault_outage_file: Path | None = Field(
        default=None, description="Test hook: while this file exists, the warehouse is treated as unreachable.")
    insert_dedup: bool = Field(default=True, description="Send insert deduplication tokens (turn off only to show "
                               "what they prevent).")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """repr() and str() show URLs redacted (``redact_url``); SecretStr fields print as ``**********``."""
        for name, value in super().__repr_args__():
            if isinstance(value, str) and name in _URL_FIELDS:
                value = redact_url(value, keep_path=name not in _PATH_SECRET_FIELDS)
            yield name, value

    def secrets(self) -> frozenset[str]:
        """Every secret these settings hold (passwords, also inside URLs), to scrub from output."""
        passwords = (self.warehouse_password, self.read_password, self.write_password)
        found = {secret.get_secret_value() for secret in passwords if secret is not None}
        for name in _URL_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str):
                found |= url_secrets(value, keep_path=name not in _PATH_SECRET_FIELDS)
        return frozenset(s for s in found if s)

    def to_env(self) -> dict[str, str]:
        """These settings as RUNLENS_* variables, for child processes."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"RUNLENS_{name.upper()}"] = str(value)
        return env

    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic_prefix}.dead-letters"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def detector_topic(self) -> str:
        """Run signals re-keyed by account for the detectors (``streams.signals``)."""
        return f"{self.topic_prefix}.detector-signals"

    @property
    def commands_topic(self) -> str:
        """Replay and stop commands, runlens -> engine (docs/commands.md)."""
        return f"{self.topic_prefix}.commands"

    @property
    def command_outcomes_topic(self) -> str:
        """What the engine did with each command, engine -> runlens (docs/commands.md)."""
        return f"{self.topic_prefix}.command-outcomes"

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}-worker"

    @property
    def engine_group(self) -> str:
        """Consumer group of the stand-in engine's command consumer (``runlens simulate``, the demo)."""
        return f"{self.topic_prefix}-engine"

    @property
    def stack_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def embedded_warehouse_path(self) -> Path:
        return (self.data_dir / "warehouse").resolve()

    @property
    def embedded_dsn(self) -> str:
        """The embedded warehouse's data directory as a DSN: what its owner process opens."""
        return f"chdb://{self.embedded_warehouse_path}"

    @property
    def uses_embedded_warehouse(self) -> bool:
        """No warehouse DSN set: the embedded warehouse process serves reads and writes."""
        return self.warehouse_dsn is None

    def stack_config(self) -> StackConfig:
        """What the embedded stack needs of these settings (``embedded`` never reads them)."""
        from embedded.config import StackConfig
        from producers.kafka import TopicSpec

        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value else None

        return StackConfig(
            data_dir=self.data_dir, stack_file=self.stack_file, warehouse_dsn=self.warehouse_dsn,
            topics=(TopicSpec(self.events_topic, self.partitions, self.replication_factor),
                    TopicSpec(self.dead_letter_topic, 1, self.replication_factor),
                    TopicSpec(self.alerts_topic, 1, self.replication_factor),
                    TopicSpec(self.detector_topic, self.partitions, self.replication_factor),
                    TopicSpec(self.commands_topic, 1, self.replication_factor),
                    TopicSpec(self.command_outcomes_topic, 1, self.replication_factor)),
            worker_env=self.to_env(), brokers=self.brokers, query_url=self.query_url,
            warehouse_password=secret(self.warehouse_password), warehouse_port=self.warehouse_port,
            read_password=secret(self.read_password), write_password=secret(self.write_password),
            workers=self.workers, broker_port=self.broker_port,
            broker_storage=self.broker_storage)


# Fields holding URLs that may carry credentials (shown through redact_url), and those whose path
# itself is a secret (webhook URLs such as https://hooks.example.com/services/T0/B0/SECRET).
_URL_FIELDS = ("brokers", "warehouse_dsn", "query_url", "broker_storage", "alert_webhook_url")
_PATH_SECRET_FIELDS = ("alert_webhook_url",)

