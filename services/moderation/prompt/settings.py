"""Prompt checkpoint settings (``ALIVE_MODERATION_PROMPT__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from alive.pipeline import MODERATION_PROMPT
from alive.settings import StageSettings, stage_settings_config
from services.moderation.prompt.terms import DEFAULT_TERMS


class PromptCheckpointSettings(StageSettings):
    model_config = stage_settings_config(MODERATION_PROMPT)

    # The term list per policy category.
    prompt_terms_path: Path = DEFAULT_TERMS
