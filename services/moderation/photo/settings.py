"""Photo checkpoint settings (``ALIVE_MODERATION_PHOTO__<FIELD>``)."""

from __future__ import annotations

from typing import ClassVar

from alive.limits import JobLimits
from alive.memory import mib_of
from alive.pipeline import MODERATION_PHOTO
from alive.settings import stage_settings_config
from services.moderation.image_rules import ImageCheckpointSettings

# A photo's peak per pixel while it is checked (stage.py decoded_for_checks): its PNG bytes
# (ingest's re-encoding; about 3 a pixel for a photo with camera noise) and the full-size
# decode (3) until it is reduced to the size the checks need; the models work on that.
# Measured: 256 MiB for 40 megapixels (an 81 MiB PNG), benchmarks/stage_memory.py; 325 MiB
# budgeted. Decoded and checked at full size, as before, it peaked at 578 MiB (533 in issue 9).
PHOTO_BYTES_PER_PIXEL = 6


class PhotoCheckpointSettings(ImageCheckpointSettings):
    model_config = stage_settings_config(MODERATION_PHOTO)
    BASE_MEMORY_MIB: ClassVar[int] = 704  # measured 669 MiB with its models loaded
    # The models' working memory on the reduced photo (at most 1280 pixels across).
    JOB_MEMORY_MIB: ClassVar[int] = 96

    min_photo_side: int = 64

    def job_memory_mib(self, limits: JobLimits) -> int:
        """One photo at the pixel limit, decoded once and reduced, and the checks on it."""
        return mib_of(limits.max_photo_pixels * PHOTO_BYTES_PER_PIXEL) + self.JOB_MEMORY_MIB
