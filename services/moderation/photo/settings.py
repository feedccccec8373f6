"""Photo checkpoint settings (``ALIVE_MODERATION_PHOTO__<FIELD>``)."""

from __future__ import annotations

from alive.pipeline import MODERATION_PHOTO
from alive.settings import StageSettings, stage_settings_config


class PhotoCheckpointSettings(StageSettings):
    model_config = stage_settings_config(MODERATION_PHOTO)

    # A photo whose grey levels vary less than this is blank.
    blank_photo_stddev: float = 4.0
    min_photo_side: int = 64
