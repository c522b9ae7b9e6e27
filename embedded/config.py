"""What the embedded stack needs to know, as its own small object.

``embedded`` sits below ``runlens`` and never reads its settings: the composition root
(``runlens.settings.Settings.stack_config``) builds a ``StackConfig``. Functions and classes
here accept either a ``StackConfig`` or anything that can make one (``SupportsStackConfig``),
so callers may pass their settings object as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from producers.kafka import TopicSpec


@dataclass(frozen=True)
class StackConfig:
    """The stack's configuration. URLs and passwords stay out of ``repr``: a DSN may hold a
    password, and ``worker_env`` holds every setting of the worker process."""

    data_dir: Path                          # warehouse, logs and stack file of the embedded stack
    stack_file: Path                        # where a running stack tells other commands about itself
    warehouse_dsn: str | None = field(repr=False)   # a ClickHouse server; None: the embedded warehouse
    topics: tuple[TopicSpec, ...]           # created before the worker starts
    worker_env: Mapping[str, str] = field(default_factory=dict, repr=False)  # the worker's settings
    brokers: str | None = field(default=None, repr=False)    # external broker; None: start one
    query_url: str | None = field(default=None, repr=False)  # where reads go, if configured
    warehouse_password: str | None = field(default=None, repr=False)   # overrides the URL's
    warehouse_port: int = 0                 # port of the embedded warehouse process (0: any free port)
    read_password: str | None = field(default=None, repr=False)        # the reader's; None: generate one
    write_password: str | None = field(default=None, repr=False)       # the writer's; None: generate one
    workers: int = 1                        # stream workers in the consumer group
    broker_port: int = 0                    # port of the embedded broker (0: any free port)
    broker_storage: str = field(default="memory://tansu/", repr=False)  # Tansu storage engine

    @property
    def uses_embedded_warehouse(self) -> bool:
        return self.warehouse_dsn is None


class SupportsStackConfig(Protocol):
    """Something that can describe the stack (the application's settings)."""

    def stack_config(self) -> StackConfig: ...


def as_config(source: StackConfig | SupportsStackConfig) -> StackConfig:
    return source if isinstance(source, StackConfig) else source.stack_config()
