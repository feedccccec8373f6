"""Generator settings (``ALIVE_GENERATOR__<FIELD>``): where Triton is and which model
animates."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from alive.limits import JobLimits
from alive.memory import MIB, mib_of
from alive.pipeline import GENERATOR
from alive.settings import StageSettings, stage_settings_config

# A photo's peak per pixel while the generator prepares it (framing.py): its PNG bytes (up to
# about 3 a pixel for a photo with camera noise) and the decoded RGB, twice while converted.
PHOTO_BYTES_PER_PIXEL = 9
# Copies of the answer held at once: the gRPC message, its tensor, and the stored copy
# (encrypted) of the MP4, or with raw_frames the frames and the encoder's.
ANSWER_COPIES = 3


class GeneratorSettings(StageSettings):
    model_config = stage_settings_config(GENERATOR)
    BASE_MEMORY_MIB: ClassVar[int] = 384
    # Beyond the photo and the answer: the prepared frame and the video's check (probed).
    JOB_MEMORY_MIB: ClassVar[int] = 64

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
    # itself (the frames are 170 MB per default job on the wire). They come in one gRPC
    # message: a job whose frames are over raw_frames_max_mib fails (OUTPUT_TOO_LARGE) rather
    # than ask for up to 1.87 GB at once (the largest allowed output).
    raw_frames: bool = False
    raw_frames_max_mib: int = Field(default=256, ge=1)
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

    def answer_bytes(self, limits: JobLimits) -> int:
        """The largest answer it takes from Triton (stage.py ``max_answer_bytes``)."""
        if self.raw_frames:
            return min(self.raw_frames_max_mib * MIB, limits.output.max_raw_video_bytes)
        return limits.output.max_video_bytes

    def job_memory_mib(self, limits: JobLimits) -> int:
        """The photo at the pixel limit, prepared, and the largest answer, held in copies.
        Computed, not measured: the generator needs Triton (docs/scaling.md#memory)."""
        held = limits.max_photo_pixels * PHOTO_BYTES_PER_PIXEL + limits.output.max_frame_bytes
        return mib_of(held + ANSWER_COPIES * self.answer_bytes(limits)) + self.JOB_MEMORY_MIB
