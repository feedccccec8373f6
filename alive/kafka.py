"""Kafka clients configured the same way for every service, and topic creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from alive.dependencies import DependencyDown
from alive.pipeline import DLQ, PIPELINE, STATUS, VETOES, StageSpec, Topic
from alive.settings import ServiceSettings

log = logging.getLogger(__name__)


def connection_options(settings: ServiceSettings) -> dict[str, Any]:
    """How every client connects: the bootstrap servers, TLS and SASL from settings (SCRAM or
    PLAIN with a user and password, OAUTHBEARER with a token file)."""
    kafka = settings.kafka
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile else None,
            certfile=str(kafka.ssl_certfile) if kafka.ssl_certfile else None,
            keyfile=str(kafka.ssl_keyfile) if kafka.ssl_keyfile else None,
        )
    if kafka.security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = kafka.sasl_mechanism
        if kafka.sasl_mechanism == "OAUTHBEARER":
            assert kafka.sasl_oauth_token_path is not None  # checked by KafkaSettings
            options["sasl_oauth_token_provider"] = FileTokenProvider(kafka.sasl_oauth_token_path)
        else:
            assert kafka.sasl_password is not None  # checked by KafkaSettings
            options |= {
                "sasl_plain_username": kafka.sasl_username,
                "sasl_plain_password": kafka.sasl_password.get_secret_value(),
            }
    return options


class FileTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """The OAUTHBEARER token, read from a file at every call: aiokafka asks at each
    connection's authentication, so a token the platform rotates in place (a sidecar, a
    projected service-account token) is picked up without a restart. Never logged."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def token(self) -> str:
        try:
            text = await asyncio.to_thread(self.path.read_text, encoding="utf-8")
        except OSError as e:
            raise KafkaTokenError(f"cannot read the OAUTHBEARER token file {self.path}: {e}") from e
        token = text.strip()
        if not token:
            raise KafkaTokenError(f"the OAUTHBEARER token file {self.path} is empty")
        return token

    def __repr__(self) -> str:
        return f"FileTokenProvider({str(self.path)!r})"


class KafkaTokenError(RuntimeError):
    """The OAUTHBEARER token file is missing, unreadable or empty."""


def make_producer(settings: ServiceSettings, client_id: str) -> AIOKafkaProducer:
    profile = settings.kafka_profile()
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        # An event counts as sent only once every in-sync replica has it.
        acks="all",
        enable_idempotence=profile.enable_idempotence,
        max_request_size=settings.kafka.max_request_size,
        linger_ms=2,
    )


def make_consumer(
    settings: ServiceSettings, group_id: str | None, client_id: str
) -> AIOKafkaConsumer:
    profile = settings.kafka_profile()
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=profile.session_timeout_ms,
        heartbeat_interval_ms=profile.heartbeat_interval_ms,
        # Jobs run while the consumer keeps polling (paused partitions), so this bounds the
        # gap between polls, not the length of a job.
        max_poll_interval_ms=300_000,
    )


async def ensure_topics(settings: ServiceSettings) -> None:
    """Creates every topic of the pipeline that does not exist yet."""
    profile = settings.kafka_profile()
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [
            NewTopic(
                name=settings.topic(topic),
                num_partitions=profile.topic_partitions,
                replication_factor=profile.replication_factor,
                topic_configs=topic.configs,
            )
            for topic in PIPELINE.topics()
            if settings.topic(topic) not in existing
        ]
        missing = [t.name for t in new]
        if not missing:
            return
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another service created them first
        log.info("created topics", extra={"topics": missing})
    finally:
        await admin.close()


def stage_topics(spec: StageSpec) -> list[Topic[Any]]:
    """The topics a stage's runner reads and writes: its own, and the status, vetoes and
    dead-letter topics every stage writes (under per-stage ACLs, the ones it may see)."""
    holds = [spec.holds] if spec.holds is not None else []
    return [spec.consumes, spec.emits, *holds, STATUS, VETOES, DLQ]


def missing_topic_names(
    settings: ServiceSettings, existing: set[str], topics: Sequence[Topic[Any]]
) -> list[str]:
    """The names here of ``topics`` that are not in ``existing``."""
    return [settings.topic(t) for t in topics if settings.topic(t) not in existing]


class BrokerProbes:
    """The dependency probes of the broker (alive/dependencies.py): it answers a metadata
    request, and ``topics`` exist. A missing topic is created again when the profile allows
    it (the embedded broker keeps nothing over a restart); otherwise it is reported, never
    silently assumed."""

    def __init__(self, settings: ServiceSettings, topics: Sequence[Topic[Any]]) -> None:
        self._settings = settings
        self._topics = list(topics)
        self._admin: AIOKafkaAdminClient | None = None

    async def broker(self) -> None:
        await self._topic_names()

    async def topics(self) -> None:
        missing = missing_topic_names(self._settings, await self._topic_names(), self._topics)
        if not missing:
            return
        if not self._settings.kafka_profile().create_missing_topics:
            raise DependencyDown(f"missing topics: {', '.join(missing)}")
        log.warning("topics missing; creating them", extra={"topics": missing})
        await ensure_topics(self._settings)

    async def _topic_names(self) -> set[str]:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**connection_options(self._settings))
            try:
                await admin.start()
            except BaseException:
                await admin.close()
                raise
            self._admin = admin
        return set(await self._admin.list_topics())

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
            self._admin = None
