"""Dependency probes and what they show (alive/dependencies.py, alive/kafka.py BrokerProbes):
readiness, the ``alive_dependency_up`` gauge, one log line per change; the broker's and the
object store's probes against real ones (the test broker, moto's S3 server), missing topics
created or reported by profile; repeated warnings held back in the log."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from alive.blobs import LocalBlobStore
from alive.dependencies import (
    BLOB_STORE,
    BROKER,
    TOPICS,
    BlobStoreProbe,
    DependencyDown,
    DependencyMonitor,
)
from alive.health import HealthServer
from alive.kafka import BrokerProbes, connection_options, missing_topic_names, stage_topics
from alive.pipeline import INGEST, PIPELINE
from alive.s3_store import S3BlobStore
from alive.settings import ServiceSettings
from alive.telemetry import RepeatedWarnings
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.embedded.ports import free_port
from tests.support import MotoS3


def gauge(registry: CollectorRegistry, dependency: str) -> float | None:
    return registry.get_sample_value(
        "alive_dependency_up", {"service": "svc", "dependency": dependency}
    )


async def until(condition: Callable[[], bool], timeout_s: float = 10) -> None:
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


class Switch:
    """A probe whose answer the test sets."""

    def __init__(self) -> None:
        self.why: str | None = None
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.why is not None:
            raise DependencyDown(self.why)


async def test_a_failing_probe_makes_the_service_not_ready_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = CollectorRegistry()
    health = HealthServer("127.0.0.1", 0, registry)
    monitor = DependencyMonitor("svc", registry, interval_s=0.01)
    probe = Switch()
    monitor.add(BROKER, probe, health)
    assert not monitor.up(BROKER) and health.failing_checks() == [BROKER]  # until probed

    caplog.set_level(logging.INFO, logger="alive.dependencies")
    await monitor.start()
    assert monitor.up(BROKER) and health.failing_checks() == []
    assert gauge(registry, BROKER) == 1

    probe.why = "connection refused"
    calls = probe.calls
    await until(lambda: probe.calls >= calls + 20)  # many probes fail in a row
    assert health.failing_checks() == [BROKER]
    assert monitor.down() == {BROKER: "connection refused"}
    assert gauge(registry, BROKER) == 0

    probe.why = None
    await until(lambda: monitor.up(BROKER))
    await monitor.stop()
    changes = [(r.getMessage(), getattr(r, "why", None)) for r in caplog.records]
    assert changes == [
        ("dependency usable", None),
        ("dependency unusable", "connection refused"),
        ("dependency usable", None),
    ]  # one line per change, never one per probe


async def test_a_probe_that_does_not_answer_in_time_is_down() -> None:
    async def hangs() -> None:
        await asyncio.sleep(60)

    monitor = DependencyMonitor("svc", CollectorRegistry(), timeout_s=0.05)
    monitor.add(BLOB_STORE, hangs)
    assert not await monitor.check(BLOB_STORE)
    assert "no answer within 0.05 s" in monitor.down()[BLOB_STORE]


async def test_a_hanging_store_holds_one_probe_thread_only(tmp_path: Path) -> None:
    released = threading.Event()

    class HangingStore(LocalBlobStore):
        def read_key(self, key: str) -> bytes | None:
            released.wait(10)
            return super().read_key(key)

    probe = BlobStoreProbe(HangingStore(tmp_path))
    monitor = DependencyMonitor("svc", CollectorRegistry(), timeout_s=0.05)
    monitor.add(BLOB_STORE, probe)
    try:
        assert not await monitor.check(BLOB_STORE)
        assert not await monitor.check(BLOB_STORE)
        assert monitor.down()[BLOB_STORE] == "the last read has not answered yet"
        released.set()
        await asyncio.sleep(0.05)
        assert await monitor.check(BLOB_STORE)
    finally:
        released.set()
        probe.close()


async def test_the_object_store_probe_knows_a_missing_bucket_and_a_dead_endpoint(
    s3: MotoS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3.environment.items():
        monkeypatch.setenv(name, value)
    monitor = DependencyMonitor("svc", CollectorRegistry())
    probes = {
        "good": BlobStoreProbe(S3BlobStore(f"s3://{s3.BUCKET}/p", 1024)),
        "no-bucket": BlobStoreProbe(S3BlobStore("s3://no-such-bucket/p", 1024)),
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    probes["dead"] = BlobStoreProbe(S3BlobStore(f"s3://{s3.BUCKET}/p", 1024))
    try:
        for name, probe in probes.items():
            monitor.add(name, probe)
        assert [await monitor.check(name) for name in probes] == [True, False, False]
        assert "NoSuchBucket" in monitor.down()["no-bucket"]
    finally:
        for probe in probes.values():
            probe.close()


def renamed_topics(broker: EmbeddedBroker, profile: str) -> ServiceSettings:
    """Settings whose topics are all new names: every one is missing on the broker."""
    run = uuid.uuid4().hex[:8]
    return ServiceSettings(
        profile=profile,  # type: ignore[arg-type]
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        topics={t.key: f"t{run}.{t.key}" for t in PIPELINE.topics()},
    )


async def test_missing_topics_are_created_in_the_embedded_profile(broker: EmbeddedBroker) -> None:
    settings = renamed_topics(broker, "embedded")
    probes = BrokerProbes(settings, stage_topics(INGEST))
    try:
        await probes.broker()
        await probes.topics()  # creates them
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**connection_options(settings))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            assert missing_topic_names(settings, existing, PIPELINE.topics()) == []
        finally:
            await admin.close()
    finally:
        await probes.close()


async def test_missing_topics_are_reported_in_the_production_profile(
    broker: EmbeddedBroker,
) -> None:
    settings = renamed_topics(broker, "production")
    probes = BrokerProbes(settings, stage_topics(INGEST))
    try:
        await probes.broker()  # the broker itself answers
        with pytest.raises(DependencyDown) as down:
            await probes.topics()
        assert str(down.value) == "missing topics: " + ", ".join(
            settings.topic(t) for t in stage_topics(INGEST)
        )
        with pytest.raises(DependencyDown):
            await probes.topics()  # and nothing created them meanwhile
    finally:
        await probes.close()


async def test_a_broker_nobody_answers_on_is_down() -> None:
    settings = ServiceSettings(
        kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"},  # type: ignore[arg-type]
    )
    probes = BrokerProbes(settings, stage_topics(INGEST))
    monitor = DependencyMonitor("svc", CollectorRegistry(), timeout_s=2)
    monitor.add(BROKER, probes.broker)
    monitor.add(TOPICS, probes.topics)
    try:
        assert not await monitor.check(BROKER)
        assert not await monitor.check(TOPICS)
    finally:
        await probes.close()


def test_repeated_warnings_are_held_back_and_counted() -> None:
    now = [0.0]
    repeats = RepeatedWarnings(window_s=30, clock=lambda: now[0])

    def record(msg: str, level: int = logging.WARNING, **extra: object) -> logging.LogRecord:
        made = logging.makeLogRecord({"name": "aiokafka", "levelno": level, "msg": msg})
        made.__dict__.update(extra)
        return made

    unable = "Unable connect to node with id %s"
    assert repeats.filter(record(unable))
    assert not any(repeats.filter(record(unable)) for _ in range(500))
    assert repeats.filter(record("another warning"))
    assert repeats.filter(record(unable, dependency="topics"))  # other fields: another kind
    assert not repeats.filter(record(unable, dependency="topics"))
    assert repeats.filter(record(unable, logging.INFO))  # info is never held back
    assert repeats.filter(record(unable, job_id="j1"))  # nor a line about a job
    now[0] = 31.0
    summary = record(unable)
    assert repeats.filter(summary) and summary.__dict__["repeated"] == 500
    assert not repeats.filter(record(unable))


def test_each_stage_probes_only_topics_its_kafka_user_may_describe() -> None:
    # Under per-stage ACLs a metadata request lists only those: any other would look missing.
    from tests.deploy.test_kafka_acls import _user_name, _users, granted_acls

    users = _users()
    for spec in PIPELINE:
        describable = {
            name for kind, name, op in granted_acls(users[_user_name(spec)]) if op == "Describe"
        }
        assert {t.default_name for t in stage_topics(spec)} <= describable, spec.name
