"""Runs one stage as a service process: the ``__main__`` of every service calls ``serve``.

The service is named after its stage (alive/pipeline.py). It wires what every service has
(logs, traces, metrics and health endpoint, blob store, ledger, Kafka producer, the stage
runner) around the service's own stage and, for a service with more to run (ingest's gRPC
API), its extra components. SIGTERM or SIGINT stops fetching, lets in-flight jobs finish,
commits and exits 0; a fatal error exits 1, and so does a stage whose memory budget does
not fit the memory the service may use (alive/memory.py), before it starts anything.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from alive.attestation import load_keyring
from alive.blobs import StageLedger, open_configured_blob_store
from alive.dependencies import BLOB_STORE, BROKER, TOPICS, BlobStoreProbe, DependencyMonitor
from alive.encryption import EncryptingBlobStore
from alive.health import HealthServer
from alive.kafka import BrokerProbes, make_producer, stage_topics
from alive.memory import MemoryBudgetError, check_budget
from alive.runner import StageRunner
from alive.scratch import sweep_orphaned
from alive.settings import ServiceSettings, StageSettings
from alive.stage import Stage
from alive.telemetry import StageMetrics, setup_logging, setup_tracing, shutdown_tracing

log = logging.getLogger(__name__)

SettingsT = TypeVar("SettingsT", bound=StageSettings)


class Component(Protocol):
    """Something a service runs beside its stage (e.g. a gRPC server)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class ServiceRuntime:
    """What a stage and its components get to work with."""

    settings: ServiceSettings
    blobs: EncryptingBlobStore  # every service's store encrypts (alive/encryption.py)
    ledger: StageLedger
    producer: AIOKafkaProducer
    metrics: StageMetrics
    health: HealthServer
    dependencies: DependencyMonitor


# Makes the service's stage and its extra components, for a service with more than a stage.
Build = Callable[[SettingsT, ServiceRuntime], tuple[Stage[Any, SettingsT], Sequence[Component]]]


def serve(
    stage_class: type[Stage[Any, SettingsT]],
    stage_settings: SettingsT,
    build: Build[SettingsT] | None = None,
) -> None:
    """Runs ``stage_class`` (made by ``build`` when given) until SIGTERM or a fatal error."""
    service = stage_class.spec.name
    settings = ServiceSettings()
    setup_logging(service, settings.log_level)
    setup_tracing(service, settings.otlp_endpoint, settings.trace_dir)
    make = build or (lambda own, runtime: (stage_class(own, runtime.blobs), []))
    try:
        budget = stage_settings.memory_budget(settings.limits)
        check_budget(service, budget, settings.memory_limit_mib)
    except MemoryBudgetError as exc:
        log.error("refusing to start: the memory budget does not fit", extra={"why": str(exc)})
        sys.exit(1)
    try:
        asyncio.run(_serve(service, settings, stage_settings, make))
    except Exception:
        log.exception("service stopped on an error")
        sys.exit(1)
    finally:
        shutdown_tracing()


async def _serve(
    service: str, settings: ServiceSettings, stage_settings: SettingsT, build: Build[SettingsT]
) -> None:
    swept = await asyncio.to_thread(sweep_orphaned)
    if swept:  # a killed process's plaintext (alive/scratch.py)
        log.warning("removed scratch folders of processes gone", extra={"folders": swept})
    registry = CollectorRegistry()
    metrics = StageMetrics(service, registry)
    health = HealthServer(settings.http_host, settings.http_port, registry)
    blobs = open_configured_blob_store(settings)
    producer = make_producer(settings, client_id=service)
    await producer.start()
    dependencies = DependencyMonitor(service, registry)
    runtime = ServiceRuntime(
        settings, blobs, StageLedger(blobs), producer, metrics, health, dependencies
    )
    stage, components = build(stage_settings, runtime)
    broker = BrokerProbes(settings, stage_topics(stage.spec))
    blob_probe = BlobStoreProbe(blobs)
    dependencies.add(BROKER, broker.broker, health)
    dependencies.add(TOPICS, broker.topics, health)
    dependencies.add(BLOB_STORE, blob_probe, health)
    for name, probe in stage.probes().items():
        dependencies.add(name, probe, health)
    keyring = load_keyring(stage.spec, stage_settings, settings)
    runner = StageRunner(stage, settings, producer, runtime.ledger, metrics, keyring)
    health.add_readiness_check("consumer", lambda: runner.ready)
    health.add_readiness_check(service, stage.is_ready)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.stop)
    started: list[Component] = []
    try:
        await health.start()
        await stage.start()
        await dependencies.start()
        for component in components:
            await component.start()
            started.append(component)
        log.info("started", extra={"stage": service, "http_port": health.port})
        await runner.run()
    finally:
        for component in reversed(started):
            await component.stop()
        await dependencies.stop()
        await broker.close()
        blob_probe.close()
        await stage.stop()
        await producer.stop()
        await health.stop()
        log.info("stopped")
