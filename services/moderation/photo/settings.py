"""Photo checkpoint settings (``ALIVE_MODERATION_PHOTO__<FIELD>``)."""

from __future__ import annotations

from typing import ClassVar

from alive.pipeline import MODERATION_PHOTO
from alive.settings import stage_settings_config
from services.moderation.image_rules import ImageCheckpointSettings


class PhotoCheckpointSettings(ImageCheckpointSettings):
    model_config = stage_settings_config(MODERATION_PHOTO)
    BASE_MEMORY_MIB: ClassVar[int] = 640
    JOB_MEMORY_MIB: ClassVar[int] = 96

    min_photo_side: int = 64
