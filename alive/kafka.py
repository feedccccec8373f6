"""Kafka clients configured the same way for every service, and topic creation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from alive.dependencies import DependencyDown
from alive.pipeline import DLQ, PIPELINE, STATUS, VETOES, Pipeline, StageSpec, Topic
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


# A consumer that follows a topic in the background (no job waits on it: retention, a folder
# of jobs, the review page's feed) polls at the long wait: on the embedded broker the short
# one costs CPU in the broker and the client (15 idle consumers: 26% of a core at 100 ms
# against 8.5% at 500 ms).
BACKGROUND_FETCH_MAX_WAIT_MS = 500


def make_consumer(
    settings: ServiceSettings,
    group_id: str | None,
    client_id: str,
    fetch_max_wait_ms: int | None = None,
) -> AIOKafkaConsumer:
    """``fetch_max_wait_ms``: the profile's (or the setting's) unless given."""
    profile = settings.kafka_profile()
    return AIOKafkaConsumer(
        **connection_options(settings),
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=profile.session_timeout_ms,
        heartbeat_interval_ms=profile.heartbeat_interval_ms,
        fetch_max_wait_ms=fetch_max_wait_ms or profile.fetch_max_wait_ms,
        # Jobs run while the consumer keeps polling (paused partitions), so this bounds the
        # gap between polls, not the length of a job.
        max_poll_interval_ms=300_000,
    )


@dataclass(frozen=True)
class DesiredTopic:
    """A topic as it should be on the cluster: its declaration (alive/pipeline.py) with the
    cluster-wide settings applied."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


def desired_topics(settings: ServiceSettings, pipeline: Pipeline = PIPELINE) -> list[DesiredTopic]:
    """Every topic of the pipeline as ``settings`` want it: what ``ensure_topics`` creates
    and corrects and what deploy/k8s declares."""
    profile = settings.kafka_profile()
    if profile.min_insync_replicas > profile.replication_factor:
        raise ValueError(
            f"min.insync.replicas {profile.min_insync_replicas} is above the replication "
            f"factor {profile.replication_factor}: no write could succeed "
            "(ALIVE_KAFKA__MIN_INSYNC_REPLICAS)"
        )
    wanted = []
    for topic in pipeline.topics():
        configs = dict(topic.configs)
        if topic.carries_prompt:
            configs["retention.ms"] = str(_days_ms(settings.kafka.prompt_retention_days))
        configs["min.insync.replicas"] = str(profile.min_insync_replicas)
        wanted.append(
            DesiredTopic(
                name=settings.topic(topic),
                partitions=topic.partitions or profile.topic_partitions,
                replication_factor=profile.replication_factor,
                configs=configs,
            )
        )
    return wanted


def _days_ms(days: int) -> int:
    return days * 24 * 3600 * 1000


@dataclass
class TopicChanges:
    """What ``ensure_topics`` did, and what it found but may not change."""

    created: list[str] = field(default_factory=list)
    # topic -> config -> (value found, value set)
    altered: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    # Partitions differ from the declaration: never changed here, since adding partitions
    # moves keys (a job's events, alive.jobs lookups) to other partitions.
    partitions_differ: dict[str, tuple[int, int]] = field(default_factory=dict)
    # Configs that differ where the broker cannot alter them (the embedded broker has no
    # AlterConfigs): topic -> config -> (value found, value declared).
    unaltered: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)


async def ensure_topics(settings: ServiceSettings, alter: bool = False) -> TopicChanges:
    """Creates every topic of the pipeline that does not exist yet; with ``alter``, also sets
    the configs of existing topics that differ from their declaration (``alive topics``).
    A config the broker does not report (the embedded broker knows few) is left alone."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    changes = TopicChanges()
    try:
        wanted = desired_topics(settings)
        existing = set(await admin.list_topics())
        new = [t for t in wanted if t.name not in existing]
        if new:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name=t.name,
                            num_partitions=t.partitions,
                            replication_factor=t.replication_factor,
                            topic_configs=t.configs,
                        )
                        for t in new
                    ]
                )
            except TopicAlreadyExistsError:
                pass  # another service created them first
            changes.created = [t.name for t in new]
            log.info("created topics", extra={"topics": changes.created})
        if alter:
            await _correct_existing(admin, [t for t in wanted if t.name in existing], changes)
    finally:
        await admin.close()
    return changes


async def _correct_existing(
    admin: AIOKafkaAdminClient, topics: list[DesiredTopic], changes: TopicChanges
) -> None:
    if not topics:
        return
    found = await _current_configs(admin, [t.name for t in topics])
    partitions = await _partition_counts(admin, [t.name for t in topics])
    for topic in topics:
        current = found.get(topic.name, {})
        differing = {
            key: (current.get(key), value)
            for key, value in topic.configs.items()
            if key in current and current[key] != value
        }
        if partitions.get(topic.name, topic.partitions) != topic.partitions:
            changes.partitions_differ[topic.name] = (partitions[topic.name], topic.partitions)
        if not differing:
            continue
        # AlterConfigs replaces a topic's whole set of overrides: send every declared one.
        resource = ConfigResource(ConfigResourceType.TOPIC, topic.name, configs=topic.configs)
        try:
            responses = await admin.alter_configs([resource])
        except IncompatibleBrokerVersion:
            changes.unaltered[topic.name] = differing
            log.warning("the broker cannot alter topic configs", extra={"topic": topic.name})
            continue
        for response in responses:
            for error_code, message, *_ in response.resources:
                if error_code:
                    raise RuntimeError(f"altering {topic.name} failed ({error_code}): {message}")
        changes.altered[topic.name] = differing
        log.info("altered topic configs", extra={"topic": topic.name, "configs": sorted(differing)})


async def _current_configs(
    admin: AIOKafkaAdminClient, names: list[str]
) -> dict[str, dict[str, str]]:
    """Each topic's configs as the broker reports them (value None: not reported)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    found: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for error_code, _message, _type, name, entries in response.resources:
            if error_code:
                continue
            found[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return found


async def _partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    described = await admin.describe_topics(names)
    return {t["topic"]: len(t["partitions"]) for t in described if not t["error_code"]}


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
