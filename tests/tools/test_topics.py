"""``alive topics`` on the embedded broker: it creates the missing topics with the configs
declared in alive/pipeline.py and settings, and reports an existing topic whose configs
differ (the embedded broker cannot alter them; a real Kafka can, and the same code sends
AlterConfigs there)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from alive.kafka import desired_topics
from alive.pipeline import DLQ, JOBS, PIPELINE
from alive.settings import ServiceSettings
from alive_tools import cli
from alive_tools.embedded.broker import EmbeddedBroker


async def configs_of(bootstrap: str, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        ((_, _, _, _, entries),) = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        await admin.close()


async def make_drifted(bootstrap: str, name: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        old = {"cleanup.policy": "delete", "retention.ms": str(14 * 24 * 3600 * 1000)}
        await admin.create_topics([NewTopic(name, 3, 1, topic_configs=old)])
    finally:
        await admin.close()


def test_topics_are_created_as_declared_and_drift_is_reported(
    broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    suffix = uuid.uuid4().hex[:8]
    monkeypatch.setenv("ALIVE_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("ALIVE_KAFKA__PROMPT_RETENTION_DAYS", "5")
    for topic in PIPELINE.topics():
        monkeypatch.setenv(f"ALIVE_TOPICS__{topic.key.upper()}", f"{topic.default_name}-{suffix}")
    settings = ServiceSettings()
    dlq = settings.topic(DLQ)
    asyncio.run(make_drifted(broker.bootstrap_servers, dlq))  # as an older release made it

    with pytest.raises(SystemExit) as done:
        cli.main(["topics"])
    assert done.value.code == 0
    out = capsys.readouterr().out.splitlines()
    wanted = {t.name: t for t in desired_topics(settings)}
    assert sorted(line for line in out if line.startswith("created")) == sorted(
        f"created {name}" for name in wanted if name != dlq
    )
    five_days = str(5 * 24 * 3600 * 1000)
    assert (
        f"differs {dlq}: retention.ms {14 * 24 * 3600 * 1000}, {five_days} declared "
        "(the broker cannot alter it)"
    ) in out
    jobs = asyncio.run(configs_of(broker.bootstrap_servers, settings.topic(JOBS)))
    assert jobs["cleanup.policy"] == "compact" and jobs["min.insync.replicas"] == "1"
    assert jobs == wanted[settings.topic(JOBS)].configs

    with pytest.raises(SystemExit):
        cli.main(["topics"])  # again: nothing to create, the same drift
    again = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("created") for line in again)
    assert any(line.startswith(f"differs {dlq}: retention.ms") for line in again)
