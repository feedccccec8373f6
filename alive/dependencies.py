"""Whether a service can use what it depends on right now: the broker and its topics, the
blob store, and (generator) the Triton model.

Each dependency has a probe, run every few seconds with a time limit. A probe that raises
or runs out of time marks its dependency down. What is down shows three ways: the
service's ``/readyz`` answers 503 naming it (each dependency is a readiness check), the gauge
``alive_dependency_up{service, dependency}`` is 0, and one log line says why when it goes
down and one when it is back, never a line per probe: a dead broker must not flood the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge

from alive.blobs import BlobStore
from alive.health import HealthServer

log = logging.getLogger(__name__)

# The dependencies' names (the gauge's ``dependency`` label and the readiness checks').
BROKER = "broker"
TOPICS = "topics"
BLOB_STORE = "blob_store"
TRITON_MODEL = "triton_model"

# Raises (any exception, its text the reason) when the dependency cannot be used.
Probe = Callable[[], Awaitable[None]]


class DependencyDown(Exception):
    """A probe's answer that the dependency is unusable, with why (for the log)."""


@dataclass
class DependencyState:
    up: bool = False  # down until a probe has passed
    reason: str = "not probed yet"
    since: float = 0.0  # monotonic time of the last change


class DependencyMonitor:
    """Probes each dependency every ``interval_s`` (at most ``timeout_s`` each) while it
    runs; ``up(name)`` and the gauge say what the last probe found."""

    def __init__(
        self,
        service: str,
        registry: CollectorRegistry,
        interval_s: float = 2.0,
        timeout_s: float = 3.0,
    ) -> None:
        self._service = service
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._probes: dict[str, Probe] = {}
        self._states: dict[str, DependencyState] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._gauge = Gauge(
            "alive_dependency_up",
            "1 while the service can use the dependency (broker, topics, blob_store, "
            "triton_model), 0 while it cannot; probed every few seconds.",
            ["service", "dependency"],
            registry=registry,
        )

    def add(self, name: str, probe: Probe, health: HealthServer | None = None) -> None:
        """Watches ``name`` with ``probe``; with ``health``, readiness includes it."""
        self._probes[name] = probe
        self._states[name] = DependencyState(since=time.monotonic())
        self._gauge.labels(self._service, name).set(0)
        if health is not None:
            health.add_readiness_check(name, lambda: self.up(name))

    def up(self, name: str) -> bool:
        return self._states[name].up

    def down(self) -> dict[str, str]:
        """What is down now, with why."""
        return {name: s.reason for name, s in self._states.items() if not s.up}

    async def check(self, name: str) -> bool:
        """Probes ``name`` once now; returns whether it is up."""
        try:
            await asyncio.wait_for(self._probes[name](), timeout=self._timeout_s)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._set(name, False, f"no answer within {self._timeout_s:g} s")
        except Exception as exc:
            self._set(name, False, str(exc) or type(exc).__name__)
        else:
            self._set(name, True, "")
        return self._states[name].up

    async def start(self) -> None:
        """Probes everything once (so readiness is known at once), then keeps probing."""
        await asyncio.gather(*(self.check(name) for name in self._probes))
        self._tasks = [asyncio.create_task(self._watch(name)) for name in self._probes]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self, name: str) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self.check(name)

    def _set(self, name: str, up: bool, reason: str) -> None:
        state = self._states[name]
        self._gauge.labels(self._service, name).set(1 if up else 0)
        changed = up != state.up or state.reason == "not probed yet"
        if changed:
            was = time.monotonic() - state.since
            if up:
                log.info("dependency usable", extra={"dependency": name, "after_s": round(was, 1)})
            else:
                log.warning("dependency unusable", extra={"dependency": name, "why": reason})
            state.since = time.monotonic()
        state.up, state.reason = up, reason


# A key nothing writes: reading it proves the store answers (its absence is an answer).
BLOB_PROBE_KEY = "health/probe"


class BlobStoreProbe:
    """Reads ``BLOB_PROBE_KEY`` on a thread of its own: an object store that hangs holds
    that one thread, never the threads the stage's work runs on, and while a read still
    hangs the store counts as down without a second one piling up."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-probe")
        self._pending: Future[bytes | None] | None = None

    async def __call__(self) -> None:
        if self._pending is not None and not self._pending.done():
            raise DependencyDown("the last read has not answered yet")
        self._pending = self._thread.submit(self._blobs.read_key, BLOB_PROBE_KEY)
        await asyncio.wrap_future(self._pending)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
