"""Audio settings (``ALIVE_AUDIO__<FIELD>``)."""

from __future__ import annotations

from alive.pipeline import AUDIO
from alive.settings import StageSettings, stage_settings_config


class AudioSettings(StageSettings):
    model_config = stage_settings_config(AUDIO)

    # Of the AAC soundtrack, in Hz.
    sample_rate: int = 48_000
