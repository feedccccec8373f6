"""Photos for evaluating the image checkpoints: real photos from tests/data and cases made from
them in code (text written on a photo, a low-contrast copy, a flat image, a tiny one)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont


def with_text(image: npt.NDArray[np.uint8], text: str) -> npt.NDArray[np.uint8]:
    """``image`` with ``text`` written across its middle, large, white on a dark band."""
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    height, width = image.shape[:2]
    size = max(12, width // max(8, len(text) // 2 + 2))
    font = ImageFont.load_default(size=size)
    draw.rectangle((0, height // 2 - size, width, height // 2 + size), fill=(20, 20, 20))
    draw.text((size // 2, height // 2 - size // 2), text, fill=(255, 255, 255), font=font)
    return np.asarray(picture)


def make_case(item: dict[str, str], folder: Path) -> bytes:
    """The PNG bytes an evaluation item names: ``photo`` (a file in ``folder``), changed as
    ``make`` says: ``text`` (write ``item["text"]`` on it), ``low_contrast`` (squeeze its
    values into a narrow band), ``flat`` (one colour), ``tiny`` (shrink to 40 pixels)."""
    rgb = np.asarray(Image.open(folder / item["photo"]).convert("RGB"))
    make = item.get("make", "")
    if make == "text":
        rgb = with_text(rgb, item["text"])
    elif make == "low_contrast":
        rgb = (120 + (rgb.astype(np.float32) - 128) * 0.06).clip(0, 255).astype(np.uint8)
    elif make == "flat":
        rgb = np.full_like(rgb, rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8))
    elif make == "tiny":
        rgb = np.asarray(Image.fromarray(rgb).resize((40, 40)))
    elif make:
        raise ValueError(f"unknown case {make!r}")
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()
