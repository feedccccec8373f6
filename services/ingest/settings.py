"""Ingest's settings (``ALIVE_INGEST__<FIELD>``): the gRPC address, its TLS and token
checks, the job id key, and the limits on what a submission may be."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from alive.limits import JobLimits
from alive.memory import MIB, MemoryBudget
from alive.pipeline import INGEST
from alive.settings import StageSettings, stage_settings_config

# A photo's peak working set per pixel in ingest's full validation: the decoded RGB (3
# bytes), and Pillow's PNG encoder's buffers. Measured: 221 MiB for 40 megapixels.
PHOTO_BYTES_PER_PIXEL = 6


class IngestSettings(StageSettings):
    model_config = stage_settings_config(INGEST)
    BASE_MEMORY_MIB: ClassVar[int] = 384

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # gRPC server reflection (lets tools such as grpcurl list the API): off unless asked for.
    grpc_reflection: bool = False
    # TLS for the API: certificate chain and key (PEM). With a client CA, callers must also
    # present a certificate it signed (mutual TLS, for service-to-service callers).
    tls_cert_path: Path | None = None
    tls_key_path: Path | None = None
    tls_client_ca_path: Path | None = None
    # Serve without TLS: only behind a mesh sidecar that terminates (m)TLS for it.
    grpc_plaintext: bool = False
    # Bearer tokens (services/ingest/auth.py): the issuer's public keys (a JWKS file; several
    # during a rotation), and the issuer and audience every token must name.
    jwks_path: Path | None = None
    jwt_issuer: str = "alive-dev"
    jwt_audience: str = "alive-api"
    jwt_leeway_s: int = 30
    # The secret (at least 32 bytes) that job ids are derived from: without it a job id
    # cannot be guessed from a creator and request id.
    job_id_key_path: Path | None = None
    max_photo_bytes: int = 20 * 1024 * 1024
    min_photo_side: int = 64
    max_prompt_chars: int = 500
    # Submissions beyond these many jobs not yet READY or ended get RESOURCE_EXHAUSTED.
    max_jobs_in_flight_per_creator: int = 8
    max_jobs_in_flight: int = 1000
    # The retry hint given with RESOURCE_EXHAUSTED and UNAVAILABLE, in seconds.
    retry_after_s: int = 5
    # Submit answers UNAVAILABLE when the broker has not taken the job within this time.
    queue_timeout_s: float = 5.0
    # Job states (services/ingest/status_view.py): how many jobs' views the cache holds
    # (each with its transitions, about 2 KB), and how many job ids the filter that spares
    # a lookup for a new job is sized for (about 1.2 bytes each; beyond it, more lookups).
    job_cache_size: int = Field(default=10_000, ge=1)
    job_filter_size: int = Field(default=10_000_000, ge=1)
    # A job not in the cache is read from its partition of alive.jobs, within this time.
    job_lookup_timeout_s: float = 10.0
    # At start, reading alive.jobs (about one record per job) may take this long.
    job_states_start_s: float = 120.0
    # Photos the gRPC API validates at once (each decoded in full: the cleaned copy is what
    # is stored); more Submits wait their turn.
    max_photo_checks: int = 2

    def job_memory_mib(self, limits: JobLimits) -> int:
        """One photo at the pixel limit, validated in full."""
        return math.ceil(limits.max_photo_pixels * PHOTO_BYTES_PER_PIXEL / MIB)

    def memory_budget(self, limits: JobLimits) -> MemoryBudget:
        """The intake's jobs and the API's photo checks, each up to one photo's worth."""
        jobs = self.max_in_flight + self.max_photo_checks
        return MemoryBudget(self.BASE_MEMORY_MIB, self.job_memory_mib(limits), jobs)
