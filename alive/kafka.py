"""Kafka clients configured the same way for every service, and topic creation."""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from alive.pipeline import PIPELINE
from alive.settings import ServiceSettings

log = logging.getLogger(__name__)


def make_producer(settings: ServiceSettings, client_id: str) -> AIOKafkaProducer:
    profile = settings.kafka_profile()
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
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
        bootstrap_servers=settings.kafka.bootstrap_servers,
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
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in map(settings.topic, PIPELINE.topics()) if n not in existing]
        if not missing:
            return
        new = [
            NewTopic(
                name=t,
                num_partitions=profile.topic_partitions,
                replication_factor=profile.replication_factor,
            )
            for t in missing
        ]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass  # another service created them first
        log.info("created topics", extra={"topics": missing})
    finally:
        await admin.close()
