"""Prepares the photo for a model: fitted into the output frame (e.g. a 9:16 Story) for a
model that animates the frame it is given, or just reduced for one that frames the photo
itself (it declares WIDTH and HEIGHT inputs, as alive_animator does: its camera moves across
the photo)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

# Cropping to fill the frame is best while it keeps most of the photo; past this, the
# photo is shown whole over a blurred, enlarged copy of itself (the usual Story framing).
MIN_KEPT_FRACTION = 0.6
# Reductions by more than this factor start with a cheap integer one (Pillow's reducing_gap;
# at 3 the result is indistinguishable from resampling the whole way).
REDUCING_GAP = 3.0
BACKGROUND_REDUCTION = 4


def fit_to_frame(photo: Image.Image, width: int, height: int) -> npt.NDArray[np.uint8]:
    """The photo as uint8 [height, width, 3], filling the frame."""
    photo = photo.convert("RGB")
    cover = max(width / photo.width, height / photo.height)
    kept = (width * height) / (photo.width * photo.height * cover * cover)
    if kept >= MIN_KEPT_FRACTION:
        return np.asarray(_cover(photo, width, height))
    contain = min(width / photo.width, height / photo.height)
    size = (max(1, round(photo.width * contain)), max(1, round(photo.height * contain)))
    foreground = photo.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    # The background is blurred past any detail, so it is made from the foreground (not the
    # photo again) at a quarter of the frame's size, blurred there and enlarged: the same
    # picture for a tenth of the CPU of blurring at full size.
    small = (max(1, width // BACKGROUND_REDUCTION), max(1, height // BACKGROUND_REDUCTION))
    background = (
        _cover(foreground, *small)
        .filter(ImageFilter.GaussianBlur(radius=small[0] / 24))
        .resize((width, height), Image.Resampling.BILINEAR)
    )
    background.paste(foreground, ((width - size[0]) // 2, (height - size[1]) // 2))
    return np.asarray(background)


# A model that frames the photo itself gets it reduced to cover the frame with this much to
# spare (its camera zooms in a little), never enlarged.
CAMERA_HEADROOM = 1.25


def reduce_for_camera(photo: Image.Image, width: int, height: int) -> npt.NDArray[np.uint8]:
    """The whole photo as uint8 [h, w, 3], no larger than a frame of width x height needs."""
    photo = photo.convert("RGB")
    scale = max(width / photo.width, height / photo.height) * CAMERA_HEADROOM
    if scale < 1:
        size = (max(width, round(photo.width * scale)), max(height, round(photo.height * scale)))
        photo = photo.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    return np.asarray(photo)


def _cover(photo: Image.Image, width: int, height: int) -> Image.Image:
    """The middle of the photo that fills width x height, resampled straight to that size
    (only the part shown is resampled)."""
    scale = max(width / photo.width, height / photo.height)
    shown_width, shown_height = width / scale, height / scale
    left, top = (photo.width - shown_width) / 2, (photo.height - shown_height) / 2
    return photo.resize(
        (width, height),
        Image.Resampling.LANCZOS,
        box=(left, top, left + shown_width, top + shown_height),
        reducing_gap=REDUCING_GAP,
    )
