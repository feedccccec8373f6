"""Prompt checkpoint settings (``ALIVE_MODERATION_PROMPT__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from alive.pipeline import MODERATION_PROMPT
from alive.settings import StageSettings, stage_settings_config
from services.moderation.policy import DEFAULT_POLICY


class PromptCheckpointSettings(StageSettings):
    model_config = stage_settings_config(MODERATION_PROMPT)
    BASE_MEMORY_MIB: ClassVar[int] = 512
    JOB_MEMORY_MIB: ClassVar[int] = 16

    # The moderation policy; loaded and checked at start (a mistake stops the service).
    policy_path: Path = DEFAULT_POLICY
