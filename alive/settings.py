"""Typed settings for every service, read from ``ALIVE_*`` environment variables.

The embedded defaults (one machine: local broker, local Triton, files on disk) live here and
nowhere else. ``ALIVE_PROFILE=production`` switches the Kafka client to the settings a real
cluster wants; anything can still be set one by one, e.g. ``ALIVE_KAFKA__BOOTSTRAP_SERVERS``.
docs/settings.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["embedded", "production"]


@dataclass(frozen=True)
class KafkaProfile:
    """Client settings that differ between the embedded broker and a real cluster."""

    session_timeout_ms: int
    heartbeat_interval_ms: int
    enable_idempotence: bool
    topic_partitions: int
    replication_factor: int


KAFKA_PROFILES: dict[Profile, KafkaProfile] = {
    # The embedded broker (Tansu) holds every JoinGroup for session_timeout/2, and rejects
    # the idempotent producer's InitProducerId.
    "embedded": KafkaProfile(
        session_timeout_ms=1000,
        heartbeat_interval_ms=200,
        enable_idempotence=False,
        topic_partitions=3,
        replication_factor=1,
    ),
    "production": KafkaProfile(
        session_timeout_ms=45_000,
        heartbeat_interval_ms=3_000,
        enable_idempotence=True,
        topic_partitions=12,
        replication_factor=3,
    ),
}


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # None: take the value from the profile (KAFKA_PROFILES).
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    enable_idempotence: bool | None = None
    topic_partitions: int | None = None
    replication_factor: int | None = None
    # Bigger than any event we send; events carry blob references, never media.
    max_request_size: int = 1_048_576


class Topics(BaseModel):
    requests: str = "alive.requests"
    accepted: str = "alive.accepted"
    photo_cleared: str = "alive.photo-cleared"
    prompt_cleared: str = "alive.prompt-cleared"
    generated: str = "alive.generated"
    scored: str = "alive.scored"
    signed: str = "alive.signed"
    ready: str = "alive.ready"
    publish_requests: str = "alive.publish-requests"
    published: str = "alive.published"
    status: str = "alive.status"
    vetoes: str = "alive.vetoes"
    dlq: str = "alive.dlq"

    def all(self) -> list[str]:
        return list(self.model_dump().values())


class ServiceSettings(BaseSettings):
    """What every service needs. Each service subclasses it with its own fields."""

    model_config = SettingsConfigDict(
        env_prefix="ALIVE_", env_nested_delimiter="__", extra="ignore"
    )

    profile: Profile = "embedded"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: Topics = Field(default_factory=Topics)
    # Where blobs (photos, videos) and the stage ledger live. A directory for the embedded
    # default; the BlobStore interface is what an S3 store implements.
    blob_root: Path = Path(".alive/blobs")
    # Health and Prometheus metrics endpoint.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    max_in_flight: int = 4
    # Transient errors (a dependency unavailable) are retried with exponential backoff.
    max_attempts: int = 6
    retry_base_s: float = 0.5
    retry_max_s: float = 20.0
    # On SIGTERM: how long in-flight jobs may take to finish before they are handed back.
    shutdown_grace_s: float = 20.0
    # OpenTelemetry: spans are exported over OTLP/gRPC only when this is set.
    otlp_endpoint: str | None = None
    log_level: str = "INFO"

    def kafka_profile(self) -> KafkaProfile:
        """The profile's Kafka settings, overridden field by field by explicit settings."""
        base = KAFKA_PROFILES[self.profile]
        k = self.kafka
        return KafkaProfile(
            session_timeout_ms=k.session_timeout_ms or base.session_timeout_ms,
            heartbeat_interval_ms=k.heartbeat_interval_ms or base.heartbeat_interval_ms,
            enable_idempotence=(
                base.enable_idempotence if k.enable_idempotence is None else k.enable_idempotence
            ),
            topic_partitions=k.topic_partitions or base.topic_partitions,
            replication_factor=k.replication_factor or base.replication_factor,
        )
