"""Typed settings, read from environment variables: what every service shares
(``ServiceSettings``, ``ALIVE_<FIELD>``) and the base of each stage's own
(``StageSettings``, ``ALIVE_<STAGE>__<FIELD>``).

The defaults are the embedded defaults (one machine: local broker, local Triton, files on
disk); each service's own defaults live in its settings class and nowhere else.
``ALIVE_PROFILE=production`` switches the Kafka client to the settings a real cluster wants;
anything can still be set one by one, e.g. ``ALIVE_KAFKA__BOOTSTRAP_SERVERS``.
docs/settings.md lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from alive.limits import JobLimits
from alive.memory import MemoryBudget
from alive.pipeline import PIPELINE, StageSpec, Topic

Profile = Literal["embedded", "production"]


@dataclass(frozen=True)
class KafkaProfile:
    """Client settings that differ between the embedded broker and a real cluster."""

    session_timeout_ms: int
    heartbeat_interval_ms: int
    enable_idempotence: bool
    topic_partitions: int
    replication_factor: int
    # A write with acks=all succeeds once this many replicas have it (below: refused).
    min_insync_replicas: int
    # A topic of the pipeline found missing while the service runs (a broker that came back
    # empty) is created again; otherwise it is reported (not ready) for an operator to fix.
    create_missing_topics: bool
    # How long the broker may hold a fetch that finds nothing new. Kafka answers a held fetch
    # as soon as a record arrives, so a long wait costs no latency there; the embedded
    # broker answers late (a hop took 81 ms at p50 with 500 ms, 36 ms with 100 ms, for 0.8%
    # more of a core per idle consumer: benchmarks/kafka_hop.py).
    fetch_max_wait_ms: int


KAFKA_PROFILES: dict[Profile, KafkaProfile] = {
    # The embedded broker (Tansu) holds every JoinGroup for session_timeout/2, and rejects
    # the idempotent producer's InitProducerId.
    "embedded": KafkaProfile(
        session_timeout_ms=1000,
        heartbeat_interval_ms=200,
        enable_idempotence=False,
        topic_partitions=3,
        replication_factor=1,
        min_insync_replicas=1,
        create_missing_topics=True,
        fetch_max_wait_ms=100,
    ),
    "production": KafkaProfile(
        session_timeout_ms=45_000,
        heartbeat_interval_ms=3_000,
        enable_idempotence=True,
        topic_partitions=12,
        replication_factor=3,
        min_insync_replicas=2,  # one broker may be down without stopping writes
        create_missing_topics=False,
        fetch_max_wait_ms=500,
    ),
}


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:9092"
    # How clients reach a real cluster: TLS (certificates from files) and SASL: SCRAM or
    # PLAIN with a user and password (a secret, never logged), or OAUTHBEARER with a token
    # read from a file that something else keeps fresh (a sidecar, a projected
    # service-account token), read anew at each connection so rotation needs no restart.
    # The embedded broker speaks PLAINTEXT.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_oauth_token_path: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None  # with ssl_keyfile: mutual TLS
    ssl_keyfile: Path | None = None
    # None: take the value from the profile (KAFKA_PROFILES).
    session_timeout_ms: int | None = None
    heartbeat_interval_ms: int | None = None
    enable_idempotence: bool | None = None
    topic_partitions: int | None = None
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    # How long topics that carry prompts (alive/pipeline.py ``carries_prompt``: requests,
    # jobs between stages, dead letters) keep them: personal data, kept short.
    prompt_retention_days: int = Field(default=7, ge=1)
    create_missing_topics: bool | None = None
    fetch_max_wait_ms: int | None = Field(default=None, ge=1)
    # Bigger than any event we send; events carry blob references, never media.
    max_request_size: int = 1_048_576

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        if not protocol.startswith("SASL_"):
            return self
        if mechanism is None:
            raise ValueError(f"{protocol} needs sasl_mechanism")
        if mechanism == "OAUTHBEARER":
            if self.sasl_oauth_token_path is None:
                raise ValueError(f"{protocol} with OAUTHBEARER needs sasl_oauth_token_path")
        elif not (self.sasl_username and self.sasl_password):
            raise ValueError(f"{protocol} with {mechanism} needs sasl_username, sasl_password")
        return self


class ServiceSettings(BaseSettings):
    """What every service shares, from ``ALIVE_<FIELD>`` variables.

    A stage's own settings are a ``StageSettings`` subclass in its service, read from
    ``ALIVE_<STAGE>__<FIELD>`` (alive/pipeline.py ``StageSpec.settings_prefix``), so two
    services never read one variable.
    """

    model_config = SettingsConfigDict(
        env_prefix="ALIVE_", env_nested_delimiter="__", extra="ignore"
    )

    profile: Profile = "embedded"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # Topic names by topic key (alive/pipeline.py), for the topics renamed from their
    # defaults: ALIVE_TOPICS__STATUS=my.status.
    topics: dict[str, str] = Field(default_factory=dict)
    # The bounds on a job's photo and video (alive/limits.py), ALIVE_LIMITS__<FIELD>: ingest
    # refuses what is outside them and every stage's memory budget follows from them.
    limits: JobLimits = Field(default_factory=JobLimits)
    # Where blobs (photos, videos) and the stage ledger live: s3://bucket/prefix (endpoint,
    # region and credentials from the standard AWS_* environment) or a local folder, the
    # embedded default.
    blob_url: str = ".alive/blobs"
    # The most a blob may hold before the store refuses to read it (512 MiB).
    blob_max_bytes: int = 512 * 1024 * 1024
    # Every blob is encrypted (alive/encryption.py) with a data key per job, wrapped by a
    # key-encryption key from this keyring file, a secret: {"current": "<id>", "keys":
    # {"<id>": "<base64 of 32 random bytes>", ...}}. Rotation: add a key and make it
    # current; keep the old ones listed while blobs they wrapped must stay readable.
    blob_keyring_path: Path = Path(".alive/keys/blob-keyring.json")
    # A cloud KMS instead of the keyring file: "package.module:function" returning an
    # alive.encryption.KekRing of KMS-backed keys (docs/security.md).
    blob_keyring_factory: str | None = None
    # On an object store, server-side encryption asked for as well: AES256, or aws:kms with
    # blob_sse_kms_key_id (None: the bucket's default KMS key).
    blob_sse: Literal["AES256", "aws:kms"] | None = None
    blob_sse_kms_key_id: str | None = None
    # Health and Prometheus metrics endpoint.
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # The stage public keys every stage trusts for attestations (alive/attestation.py):
    # {"<stage>": ["<base64 raw Ed25519 public key>", ...]}.
    attestation_trust_path: Path = Path(".alive/keys/attestation-trust.json")
    # The memory the service may use (its container's limit, in MiB): a service whose
    # budget (alive/memory.py) does not fit refuses to start. Unset: nothing is checked.
    memory_limit_mib: int | None = None
    # On SIGTERM: how long in-flight jobs may take to finish before they are handed back.
    shutdown_grace_s: float = 20.0
    # OpenTelemetry: spans are exported over OTLP/gRPC only when this is set.
    otlp_endpoint: str | None = None
    # Spans also written as JSON lines to <trace_dir>/<service>.jsonl (debugging, tests).
    trace_dir: Path | None = None
    log_level: str = "INFO"

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, topics: dict[str, str]) -> dict[str, str]:
        known = {t.key for t in PIPELINE.topics()}
        unknown = sorted(set(topics) - known)
        if unknown:
            raise ValueError(f"unknown topic keys {unknown}; known: {sorted(known)}")
        return topics

    def topic(self, topic: Topic[Any]) -> str:
        """The topic's name here: its default unless renamed."""
        return self.topics.get(topic.key, topic.default_name)

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
            min_insync_replicas=k.min_insync_replicas or base.min_insync_replicas,
            create_missing_topics=(
                base.create_missing_topics
                if k.create_missing_topics is None
                else k.create_missing_topics
            ),
            fetch_max_wait_ms=k.fetch_max_wait_ms or base.fetch_max_wait_ms,
        )


def stage_settings_config(spec: StageSpec) -> SettingsConfigDict:
    """The model_config of a stage's settings: read from ``ALIVE_<STAGE>__<FIELD>``."""
    return SettingsConfigDict(
        env_prefix=spec.settings_prefix, env_nested_delimiter="__", extra="ignore"
    )


class StageSettings(BaseSettings):
    """How the runner treats a stage's events. Each service subclasses it with its own
    fields and sets ``model_config = stage_settings_config(<its StageSpec>)``."""

    max_in_flight: int = 4
    # A stage doing long work reports its progress to the job's watchers at most this often.
    progress_interval_s: float = 1.0
    # How often the runner checks, while the stage works on a job, whether it was cancelled.
    cancel_check_s: float = 1.0
    # The stage's Ed25519 private key (PEM) for its attestations; required for a stage that
    # attests (alive/pipeline.py), a secret of that service alone.
    attestation_key_path: Path | None = None
    # Transient errors (a dependency unavailable) are retried with exponential backoff.
    max_attempts: int = 6
    retry_base_s: float = 0.5
    retry_max_s: float = 20.0

    # The stage's memory (alive/memory.py), measured: the process with its models loaded,
    # and one job's peak working set where no input bound sets it (a stage whose job's
    # working set follows from the bounds overrides job_memory_mib).
    BASE_MEMORY_MIB: ClassVar[int] = 256
    JOB_MEMORY_MIB: ClassVar[int] = 64

    def job_memory_mib(self, limits: JobLimits) -> int:
        """One job's peak working set when the job is as large as ``limits`` allow."""
        return self.JOB_MEMORY_MIB

    def memory_budget(self, limits: JobLimits) -> MemoryBudget:
        return MemoryBudget(self.BASE_MEMORY_MIB, self.job_memory_mib(limits), self.max_in_flight)
