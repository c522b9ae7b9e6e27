"""The embedded stack's own configuration: built from the settings by runlens, never read from
them by ``embedded`` (which sits below ``runlens``; see test_layering.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from embedded.config import StackConfig, as_config
from embedded.stack import Reader, resolve_brokers, resolve_reader, topic_specs
from producers.kafka import TopicSpec
from runlens import settings as runlens_settings
from runlens.settings import Settings
from schemas import redaction


def test_the_settings_build_the_stack_config(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, topic_prefix="t1", partitions=3, warehouse_port=8125, workers=2,
                        read_password=SecretStr("reader-pw-123"),
                        write_password=SecretStr("writer-pw-000"), warehouse_password=SecretStr("wh-pw-456"),
                        query_url="http://u:url-pw-789@h:8123")
    config = settings.stack_config()
    assert config.data_dir == tmp_path and config.stack_file == settings.stack_file
    assert config.warehouse_dsn is None and config.uses_embedded_warehouse and config.workers == 2
    assert config.topics == (TopicSpec("t1.events", 3, 1), TopicSpec("t1.dead-letters", 1, 1),
                             TopicSpec("t1.alerts", 1, 1), TopicSpec("t1.detector-signals", 3, 1),
                             TopicSpec("t1.commands", 1, 1),
                             TopicSpec("t1.command-outcomes", 1, 1))
    assert topic_specs(settings) == topic_specs(config) == list(config.topics)
    assert config.warehouse_port == 8125 and config.read_password == "reader-pw-123"
    assert config.write_password == "writer-pw-000"
    assert config.worker_env == settings.to_env()
    shown = repr(config)
    assert not any(secret in shown for secret in ("reader-pw-123", "writer-pw-000", "wh-pw-456", "url-pw-789"))


def test_settings_and_config_resolve_alike(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, brokers="k1:9092", query_url="http://h:8123",
                        warehouse_password=SecretStr("pw"))
    assert as_config(settings) == settings.stack_config()
    assert resolve_brokers(settings) == resolve_brokers(settings.stack_config()) == "k1:9092"
    assert resolve_reader(settings) == resolve_reader(settings.stack_config()) == Reader("http://h:8123", "pw")
    config = StackConfig(data_dir=tmp_path, stack_file=tmp_path / "stack.json", warehouse_dsn="http://h:8123",
                         topics=())
    assert resolve_reader(config) == Reader("http://h:8123")


def test_url_redaction_lives_below_every_package_and_runlens_re_exports_it() -> None:
    assert runlens_settings.redact_url is redaction.redact_url
    assert runlens_settings.redact_text is redaction.redact_text
    assert runlens_settings.url_secrets is redaction.url_secrets


def test_a_worker_finds_the_running_stacks_writer_and_nothing_else(tmp_path: Path) -> None:
    """Without a DSN a worker (or `retention set`) writes through the running stack's warehouse
    process as its writer; a server DSN, when set, wins; no stack and no DSN is a one-line error."""
    import os

    import pytest

    from embedded.stack import StackInfo, StackNotRunning, resolve_writer

    settings = Settings(data_dir=tmp_path)
    with pytest.raises(StackNotRunning):
        resolve_writer(settings)
    StackInfo("b:1", "http://127.0.0.1:9000", os.getpid(), "runlens_reader", "r-pw", "runlens_writer",
              "w-pw").write(settings.stack_file)
    assert resolve_writer(settings) == "http://runlens_writer:w-pw@127.0.0.1:9000"
    assert resolve_writer(Settings(data_dir=tmp_path, warehouse_dsn="http://u@ch:8123")) == "http://u@ch:8123"
