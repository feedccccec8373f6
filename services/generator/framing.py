"""Fits a photo into the output frame (e.g. a 9:16 Story) before animation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

# Cropping to fill the frame is best while it keeps most of the photo; past this, the
# photo is shown whole over a blurred, enlarged copy of itself (the usual Story framing).
MIN_KEPT_FRACTION = 0.6


def fit_to_frame(photo: Image.Image, width: int, height: int) -> npt.NDArray[np.uint8]:
    """The photo as uint8 [height, width, 3], filling the frame."""
    photo = photo.convert("RGB")
    cover = max(width / photo.width, height / photo.height)
    kept = (width * height) / (photo.width * photo.height * cover * cover)
    if kept >= MIN_KEPT_FRACTION:
        return np.asarray(_cover(photo, width, height))
    background = _cover(photo, width, height).filter(ImageFilter.GaussianBlur(radius=width / 24))
    contain = min(width / photo.width, height / photo.height)
    size = (max(1, round(photo.width * contain)), max(1, round(photo.height * contain)))
    foreground = photo.resize(size, Image.Resampling.LANCZOS)
    background.paste(foreground, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(background)


def _cover(photo: Image.Image, width: int, height: int) -> Image.Image:
    scale = max(width / photo.width, height / photo.height)
    scaled = photo.resize(
        (max(width, round(photo.width * scale)), max(height, round(photo.height * scale))),
        Image.Resampling.LANCZOS,
    )
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))
