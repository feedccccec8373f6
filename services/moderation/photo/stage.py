"""Moderation, photo checkpoint.

Consumes Job from alive.accepted; emits it to alive.photo-cleared. Vetoes a photo that does
not decode (PHOTO_UNDECODABLE), is smaller than the minimum side (PHOTO_TOO_SMALL) or is
blank: no colour channel varies more than the policy allows (PHOTO_BLANK). Scores sexual
content with the open_nsfw model (services/moderation/nsfw.py) and reads text written in
the photo (services/moderation/ocr.py), judged by the prompt rules: at the policy's
thresholds it vetoes (PHOTO_SEXUAL, PHOTO_TEXT) or passes the job marked for a person.
Finds faces and their apparent age (services/moderation/faces.py): a possible minor with any
sexual signal is blocked (PHOTO_MINOR_SAFETY). Records ``colour_stddev``, ``nsfw``,
``faces`` and ``apparent_min_age`` as scores; they are signed in its attestation, and the
prompt checkpoint judges the prompt with them.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from alive.blobs import BlobError
from alive.pipeline import MODERATION_PHOTO
from alive.reasons import Finding, ReasonCode
from alive.stage import StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.image_rules import ImageCheckpoint, Verdicts
from services.moderation.photo.settings import PhotoCheckpointSettings

# The largest side any check looks at, so a photo is decoded at about this size, never kept
# at its own (a 40-megapixel photo is 120 MB of pixels, and each check would copy it): faces
# are found on at most faces.DETECT_MAX_SIDE (400) pixels and their age chips cut from this,
# text is read on at most the policy's ocr_max_side, NSFW and the colour spread on 256.
CHECK_MAX_SIDE = 1280


class PhotoCheckpoint(ImageCheckpoint[PhotoCheckpointSettings]):
    spec = MODERATION_PHOTO

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        try:
            # An I/O error of the store is not the photo's fault: it reaches the runner, which
            # retries it; a blob the store refuses is.
            data = await asyncio.to_thread(self.blobs.get_bytes, event.photo)
        except BlobError as exc:
            return Veto.of(ReasonCode.PHOTO_UNDECODABLE, str(exc))
        rules = self.policy.image
        try:
            (width, height), image = decoded_for_checks(
                data, max(CHECK_MAX_SIDE, rules.ocr_max_side)
            )
        except (UnidentifiedImageError, OSError) as exc:  # PIL's decoding errors
            return Veto.of(ReasonCode.PHOTO_UNDECODABLE, str(exc))
        del data
        if min(width, height) < self.settings.min_photo_side:
            return Veto.of(ReasonCode.PHOTO_TOO_SMALL, f"{width}x{height}")
        spread = colour_spread(image)
        ctx.scores["colour_stddev"] = round(spread, 3)
        if spread <= rules.blank_max_stddev:
            return Veto.of(
                ReasonCode.PHOTO_BLANK, f"colour spread {spread:.2f}", {"colour_stddev": spread}
            )
        pixels = np.asarray(image)
        # The three models side by side: onnxruntime and OpenCV release the GIL.
        (score,), faces, text = await asyncio.gather(
            asyncio.to_thread(self.models.nsfw.scores, [image]),
            asyncio.to_thread(self.models.faces.faces, pixels),
            asyncio.to_thread(self.models.judge_text, [pixels], ReasonCode.PHOTO_TEXT),
        )
        ctx.scores["nsfw"] = round(score, 4)
        verdicts = Verdicts()
        verdicts.add(
            rules.nsfw_decision(score),
            Finding(ReasonCode.PHOTO_SEXUAL, f"nsfw score {score:.2f}"),
        )
        verdicts.add(
            *self.models.judge_faces(faces, score, ReasonCode.PHOTO_MINOR_SAFETY, ctx.scores)
        )
        verdicts.add(*text)
        return verdicts.outcome(ctx, {"nsfw": score}) or event


def decoded_for_checks(data: bytes, max_side: int) -> tuple[tuple[int, int], Image.Image]:
    """The photo's own size, and its pixels (RGB) reduced to at most ``max_side`` across. A
    JPEG is decoded at a reduced scale (Pillow's draft); a PNG (what ingest stores) is decoded
    once at full size and reduced at once, so only the reduced copy outlives this call."""
    with Image.open(io.BytesIO(data)) as opened:
        size = opened.size
        opened.thumbnail((max_side, max_side))  # in place, drafting a JPEG
        return size, opened.convert("RGB")


def colour_spread(image: Image.Image) -> float:
    """The largest standard deviation of the three colour channels (0..255), on a copy at
    most 256 pixels across: a photo whose colours share one brightness still has spread."""
    small = image.copy()
    small.thumbnail((256, 256))
    pixels = np.asarray(small, dtype=np.float32).reshape(-1, 3)
    return float(pixels.std(axis=0).max())
