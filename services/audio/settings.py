"""Audio settings (``ALIVE_AUDIO__<FIELD>``)."""

from __future__ import annotations

from typing import ClassVar

from alive.pipeline import AUDIO
from alive.settings import StageSettings, stage_settings_config


class AudioSettings(StageSettings):
    model_config = stage_settings_config(AUDIO)
    BASE_MEMORY_MIB: ClassVar[int] = 384
    JOB_MEMORY_MIB: ClassVar[int] = 128

    # Of the AAC soundtrack, in Hz.
    sample_rate: int = 48_000
