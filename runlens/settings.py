"""The one settings object, read from ``RUNLENS_*`` environment variables.

Built once at the entrypoint and passed down; nothing else reads the environment.
Left unset, the broker and warehouse addresses mean "the embedded stack": commands find
a running ``runlens up`` through the stack file in the data directory.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNLENS_", extra="ignore")

    data_dir: Path = Field(
        Path(".runlens"),
        description="Where the embedded stack keeps its warehouse, logs and stack file.",
    )
    brokers: str | None = Field(
        None,
        description="Kafka bootstrap servers (host:port,...). Unset: the embedded broker of a running `runlens up`.",
    )
    warehouse_dsn: str | None = Field(
        None,
        description="ClickHouse DSN for the worker: http(s)://user:pass@host:8123 or chdb:///path. "
        "Unset: chDB in <data_dir>/warehouse.",
    )
    query_url: str | None = Field(
        None,
        description="Where read-only commands (query, stats) send SQL. Unset: the warehouse DSN when it "
        "is a server, else the read endpoint of the process that owns the embedded warehouse.",
    )
    warehouse_password: SecretStr | None = Field(None, description="Overrides the password in the DSN.")
    database: str = Field("runlens", description="ClickHouse database holding runlens tables and views.")
    topic_prefix: str = Field("runlens", description="Prefix of every Kafka topic and of the consumer group.")
    partitions: int = Field(4, ge=1, description="Partitions of the events topic when runlens creates it.")
    replication_factor: int = Field(1, ge=1, description="Replication factor of topics runlens creates.")
    batch_max_records: int = Field(
        400, ge=1, le=400, description="Most Kafka records the worker takes per batch (a record holds one "
        "event, or up to 500 when the producer batches). At most 400: a redelivered batch must fit in the "
        "ledger's 200,000-event horizon to be recognised exactly.")
    insert_max_rows: int = Field(50_000, ge=100, description="Most rows per warehouse insert.")
    batch_max_seconds: float = Field(0.5, gt=0, description="Longest the worker waits to fill a batch.")
    max_event_bytes: int = Field(256 * 1024, ge=1024, description="Larger events are dead-lettered as oversize.")
    read_port: int = Field(0, ge=0, le=65535, description="Port of the embedded read endpoint (0 = any free port).")
    broker_port: int = Field(0, ge=0, le=65535, description="Port of the embedded broker (0 = any free port).")
    broker_storage: str = Field(
        "memory://tansu/", description="Storage engine of the embedded broker (Tansu --storage-engine): "
        "memory://tansu/ (lost when the broker stops) or a durable engine such as s3://BUCKET/ (endpoint and "
        "credentials from AWS_* variables).")
    log_level: str = Field("WARNING", description="Worker log level.")
    metrics_interval_seconds: float = Field(
        5.0, gt=0, description="How often the worker records pipeline health in pipeline_metrics.")
    alert_lateness_seconds: float = Field(
        120.0, ge=0, description="How long the detectors wait for late events before judging a minute.")
    alert_webhook_url: str | None = Field(None, description="POST every alert state change here as JSON.")
    # Fault injection for the reliability suite; leave unset in production.
    fault_lose_reply_every: int = Field(
        0, ge=0, description="Test hook: after every Nth stored insert, act as if its reply was lost.")
    fault_outage_file: Path | None = Field(
        None, description="Test hook: while this file exists, the warehouse is treated as unreachable.")
    insert_dedup: bool = Field(True, description="Send insert deduplication tokens (turn off only to show "
                               "what they prevent).")

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
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}-worker"

    @property
    def stack_file(self) -> Path:
        return self.data_dir / "stack.json"

    @property
    def embedded_warehouse_path(self) -> Path:
        return (self.data_dir / "warehouse").resolve()

    @property
    def worker_dsn(self) -> str:
        """The DSN the worker writes through."""
        return self.warehouse_dsn or f"chdb://{self.embedded_warehouse_path}"

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.worker_dsn.startswith("chdb:")
