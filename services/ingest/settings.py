"""Ingest's settings (``ALIVE_INGEST__<FIELD>``): the gRPC address and the limits on what a
submission may be."""

from __future__ import annotations

from pydantic import BaseModel, Field

from alive.pipeline import INGEST
from alive.settings import StageSettings, stage_settings_config


class OutputLimits(BaseModel):
    """What a request may ask for, and what it gets when it asks for nothing."""

    default_width: int = 576  # 9:16 portrait for a phone Story; a native size of I2V models
    default_height: int = 1024
    default_fps: int = 24
    default_duration_ms: int = 4000
    min_side: int = 64
    max_width: int = 1080
    max_height: int = 1920
    min_fps: int = 8
    max_fps: int = 30
    min_duration_ms: int = 500
    max_duration_ms: int = 10_000


class IngestSettings(StageSettings):
    model_config = stage_settings_config(INGEST)

    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50051
    # gRPC server reflection (lets tools such as grpcurl list the API): off unless asked for.
    grpc_reflection: bool = False
    max_photo_bytes: int = 20 * 1024 * 1024
    max_photo_pixels: int = 40_000_000
    min_photo_side: int = 64
    max_prompt_chars: int = 500
    # Submissions beyond these many jobs not yet READY or ended get RESOURCE_EXHAUSTED.
    max_jobs_in_flight_per_creator: int = 8
    max_jobs_in_flight: int = 1000
    # The retry hint given with RESOURCE_EXHAUSTED, in seconds.
    retry_after_s: int = 5
    output: OutputLimits = Field(default_factory=OutputLimits)
