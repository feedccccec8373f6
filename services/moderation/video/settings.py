"""Video checkpoint settings (``ALIVE_MODERATION_VIDEO__<FIELD>``)."""

from __future__ import annotations

from alive.pipeline import MODERATION_VIDEO
from alive.settings import stage_settings_config
from services.moderation.image_rules import ImageCheckpointSettings


class VideoCheckpointSettings(ImageCheckpointSettings):
    model_config = stage_settings_config(MODERATION_VIDEO)

    # How far the soundtrack's length may be from the video's.
    audio_duration_tolerance_s: float = 0.1
