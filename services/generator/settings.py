"""Generator settings (``ALIVE_GENERATOR__<FIELD>``): where Triton is and which model
animates."""

from __future__ import annotations

from typing import ClassVar

from alive.pipeline import GENERATOR
from alive.settings import StageSettings, stage_settings_config


class GeneratorSettings(StageSettings):
    model_config = stage_settings_config(GENERATOR)
    BASE_MEMORY_MIB: ClassVar[int] = 384
    JOB_MEMORY_MIB: ClassVar[int] = 192  # the photo, and with raw_frames the frames of one video

    triton_url: str = "127.0.0.1:8001"
    # The model that makes videos: alive_animator (procedural, the embedded default) or
    # i2v_diffusion (a diffusers image-to-video pipeline; docs/models.md).
    model_name: str = "alive_animator"
    # For a diffusion model (sent when its config declares these inputs).
    diffusion_steps: int = 30
    guidance: float = 3.0
    negative_prompt: str = "worst quality, inconsistent motion, blurry, jittery, distorted"
    # One inference may take this long before it counts as a (transient) failure.
    infer_timeout_s: float = 300.0
    # Debugging: fetch the raw frames and encode here, as before the model encoded next to
    # itself (the frames are 170 MB per default job on the wire).
    raw_frames: bool = False
    # When Triton answers that the model's process died (its python backend does not start
    # it again, and still reports the model ready), have Triton load the model afresh
    # (needs --model-control-mode=explicit); off: report it (not ready) and wait for a person.
    reload_dead_model: bool = True
    # Several jobs in flight let Triton's dynamic batcher fill a batch.
    max_in_flight: int = 8
    # Triton unavailable is the transient error this service expects: ride out a restart
    # (one to two minutes of jittered backoff) before a job fails.
    max_attempts: int = 10
    retry_max_s: float = 30.0
