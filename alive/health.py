"""A small HTTP endpoint per service: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

``/healthz`` answers 200 while the event loop runs. ``/readyz`` answers 200 only while every
readiness check passes (consumer in its group, dependencies reachable) and 503 otherwise,
so Kubernetes stops routing to a pod that is shutting down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], bool]


class HealthServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._checks: dict[str, ReadinessCheck] = {}
        self._server: asyncio.Server | None = None

    def add_readiness_check(self, name: str, check: ReadinessCheck) -> None:
        self._checks[name] = check

    def failing_checks(self) -> list[str]:
        return [name for name, check in self._checks.items() if not check()]

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("health endpoint listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b""):
                pass  # headers: nothing here needs them
            parts = request_line.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, content_type, body = self._respond(path)
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    def _respond(self, path: str) -> tuple[str, str, bytes]:
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            failing = self.failing_checks()
            if failing:
                return (
                    "503 Service Unavailable",
                    "text/plain",
                    ("not ready: " + ", ".join(failing) + "\n").encode(),
                )
            return "200 OK", "text/plain", b"ready\n"
        return "404 Not Found", "text/plain", b"not found\n"
