"""The one settings object, read from ``RUNLENS_*`` environment variables.

Built once at the entrypoint and passed down; nothing else reads the environment.
Left unset, the broker and warehouse addresses mean "the embedded stack": commands find
a running ``runlens up`` through the stack file in the data directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

MASK = "***"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|sig|auth|cred", re.IGNORECASE)


def _parts(url: str) -> tuple[str, str | None, str] | None:
    """(scheme://, user info or None, host and the rest) of a URL; None when ``url`` is not one.
    The user info ends at the last @ before the query: a raw password may hold / or @."""
    scheme = _SCHEME.match(url)
    if scheme is None:
        return None
    rest = url[scheme.end():]
    query_at = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    at = rest.rfind("@", 0, query_at)
    return (scheme.group(0), rest[:at], rest[at + 1:]) if at >= 0 else (scheme.group(0), None, rest)


def _path_start(hostpart: str) -> int:
    return min((i for i in (hostpart.find(c) for c in "/?#") if i >= 0), default=len(hostpart))


def redact_url(url: str, *, keep_path: bool = True) -> str:
    """``url`` safe to show: the password of its user info and the values of secret-looking query
    parameters (password, token, key, signature...) become ``***``; with ``keep_path=False`` (a
    webhook whose path is the secret) everything after the host does too. Not a URL: unchanged."""
    parts = _parts(url)
    if parts is None:
        return url
    scheme, userinfo, hostpart = parts
    if userinfo is not None and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + MASK
    if not keep_path:
        end = _path_start(hostpart)
        hostpart = hostpart[:end] + ("/" + MASK if end < len(hostpart) else "")
    elif "?" in hostpart:
        head, _, query = hostpart.partition("?")
        query, hash_, fragment = query.partition("#")
        pairs = [(k, MASK if _SECRET_KEY.search(k) else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        hostpart = head + "?" + urlencode(pairs, safe="*") + hash_ + fragment
    return scheme + (userinfo + "@" if userinfo is not None else "") + hostpart


def url_secrets(url: str, *, keep_path: bool = True) -> set[str]:
    """The parts of ``url`` that ``redact_url`` hides (to scrub them wherever else they appear)."""
    parts = _parts(url)
    if parts is None:
        return set()
    _, userinfo, hostpart = parts
    found = {userinfo.split(":", 1)[1]} if userinfo is not None and ":" in userinfo else set()
    if not keep_path:
        found.add(hostpart[_path_start(hostpart):].lstrip("/"))
    elif "?" in hostpart:
        query = hostpart.partition("?")[2].partition("#")[0]
        found |= {v for k, v in parse_qsl(query) if _SECRET_KEY.search(k)}
    return {f for f in found if f}


def redact_text(text: str, secrets: tuple[str, ...] | frozenset[str] = ()) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted (``redact_url``)
    and every literal occurrence of ``secrets`` replaced by ``***``."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:   # shorter "secrets" would blank out ordinary words
            text = text.replace(secret, MASK)
    return text


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
    max_clock_skew_seconds: float = Field(
        300.0, ge=0, description="Event times (ts, started_at, resumed_at) further ahead of the worker's clock "
        "than this are dead-lettered when received.")
    read_port: int = Field(0, ge=0, le=65535, description="Port of the embedded read endpoint (0 = any free port).")
    read_password: SecretStr | None = Field(
        None, description="Password of the embedded read endpoint's user runlens_reader. Unset: `runlens up` "
        "generates one per stack and keeps it in the stack file (owner-only); a worker started alone "
        "without it serves nobody.")
    read_max_execution_seconds: float = Field(
        60.0, gt=0, description="Embedded read endpoint: longest a query may run (max_execution_time).")
    read_max_memory_bytes: int = Field(
        2 * 2**30, ge=2**20, description="Embedded read endpoint: most memory one query may use (max_memory_usage).")
    read_max_result_rows: int = Field(
        10_000_000, ge=1, description="Embedded read endpoint: most rows a result may have (max_result_rows; "
        "more is an error, not a cut). `runlens export` of more runs needs it raised.")
    read_max_result_bytes: int = Field(
        2 * 2**30, ge=2**20, description="Embedded read endpoint: largest result, uncompressed (max_result_bytes).")
    read_max_request_bytes: int = Field(
        2**20, ge=4096, description="Embedded read endpoint: largest request body (query text and parameters).")
    read_max_concurrent_queries: int = Field(
        4, ge=1, description="Embedded read endpoint: queries at once; more get HTTP 503 (clients retry).")
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

    def __repr_args__(self):
        """repr() and str() show URLs redacted (``redact_url``); SecretStr fields print as ``**********``."""
        for name, value in super().__repr_args__():
            if isinstance(value, str) and name in _URL_FIELDS:
                value = redact_url(value, keep_path=name not in _PATH_SECRET_FIELDS)
            yield name, value

    def secrets(self) -> frozenset[str]:
        """Every secret these settings hold (passwords, also inside URLs), to scrub from output."""
        found = {secret.get_secret_value() for secret in (self.warehouse_password, self.read_password)
                 if secret is not None}
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


# Fields holding URLs that may carry credentials (shown through redact_url), and those whose path
# itself is a secret (webhook URLs such as https://hooks.example.com/services/T0/B0/SECRET).
_URL_FIELDS = ("brokers", "warehouse_dsn", "query_url", "broker_storage", "alert_webhook_url")
_PATH_SECRET_FIELDS = ("alert_webhook_url",)

