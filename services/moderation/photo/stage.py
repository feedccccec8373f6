"""Moderation, photo checkpoint.

Consumes Job from alive.accepted; emits it unchanged to alive.photo-cleared. Vetoes a photo
that does not decode (PHOTO_UNDECODABLE), is smaller than the minimum side
(PHOTO_TOO_SMALL) or is blank, a single flat colour (PHOTO_BLANK). Records the photo's
grey-level spread as the score ``pixel_stddev``. Learned classifiers (NSFW, minors, text)
come in their own issue; this is the deterministic depth.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from alive.blobs import BlobError
from alive.pipeline import MODERATION_PHOTO
from alive.reasons import ReasonCode
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.photo.settings import PhotoCheckpointSettings


class PhotoCheckpoint(Stage[Job, PhotoCheckpointSettings]):
    spec = MODERATION_PHOTO

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        try:
            data = await asyncio.to_thread(self.blobs.get_bytes, event.photo)
            with Image.open(io.BytesIO(data)) as image:
                grey = np.asarray(image.convert("L"), dtype=np.float32)
        except (BlobError, UnidentifiedImageError, OSError) as exc:
            return Veto.of(ReasonCode.PHOTO_UNDECODABLE, str(exc))
        height, width = grey.shape
        if min(width, height) < self.settings.min_photo_side:
            return Veto.of(ReasonCode.PHOTO_TOO_SMALL, f"{width}x{height}")
        spread = float(grey.std())
        ctx.scores["pixel_stddev"] = round(spread, 3)
        if spread < self.settings.blank_photo_stddev:
            return Veto.of(
                ReasonCode.PHOTO_BLANK, f"grey-level spread {spread:.2f}", {"pixel_stddev": spread}
            )
        return event
