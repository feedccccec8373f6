"""How the generator fits a photo to the frame a model animates."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from services.generator.framing import CAMERA_HEADROOM, fit_to_frame, reduce_for_camera


def _photo(width: int, height: int) -> Image.Image:
    """Detail everywhere that a reduction keeps (a checkerboard of squares a 40th of the
    photo's width) over a colour ramp."""
    y, x = np.mgrid[0:height, 0:width]
    side = max(1, width // 40)
    board = (((x // side) + (y // side)) % 2 * 200).astype(np.uint8)
    rgb = np.stack([board, (x * 255 // width).astype(np.uint8), board], axis=-1)
    return Image.fromarray(rgb)


def _detail(region: npt.NDArray[np.uint8]) -> float:
    """Mean difference between neighbouring pixels: high for the photo, low once blurred."""
    return float(np.abs(np.diff(region.astype(int), axis=1)).mean())


def test_a_photo_close_to_the_frame_fills_it_cropped() -> None:
    framed = fit_to_frame(_photo(300, 480), 96, 160)
    assert framed.shape == (160, 96, 3) and framed.dtype == np.uint8
    assert _detail(framed[:8]) > 20 and _detail(framed[-8:]) > 20  # photo edge to edge


def test_a_wide_photo_is_shown_whole_over_a_blurred_copy_of_itself() -> None:
    photo = _photo(480, 240)
    framed = fit_to_frame(photo, 96, 160)
    assert framed.shape == (160, 96, 3)
    whole = np.asarray(photo.resize((96, 48), Image.Resampling.LANCZOS))
    top = (160 - 48) // 2
    assert np.abs(framed[top : top + 48].astype(int) - whole).mean() < 2  # the photo, whole
    above, below = framed[: top - 2], framed[top + 50 :]
    assert _detail(above) < _detail(whole) / 4 and _detail(below) < _detail(whole) / 4
    # The background is the photo's own colours (its green ramp), not a fill.
    assert np.ptp(above[..., 1].mean(axis=0)) > 40


def test_a_model_that_frames_the_photo_gets_it_reduced_never_enlarged() -> None:
    reduced = reduce_for_camera(_photo(2000, 1500), 96, 160)
    assert reduced.shape[0] >= 160 * CAMERA_HEADROOM - 1 and reduced.shape[1] >= 96
    assert reduced.shape[0] < 1500
    small = reduce_for_camera(_photo(60, 40), 96, 160)
    assert small.shape == (40, 60, 3)
