"""Contact sheets of the embedded animator: for each photo, one PNG with a row of frames per
prompt, labelled with the prompt and the effects it selected, so a person can judge a set of
results in seconds (``alive demo``, ``make bench``).

The animator runs in this process, the same code Triton runs (models/alive_animator/1).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from alive_tools.embedded.stack import REPO_ROOT

ANIMATOR_DIR = REPO_ROOT / "models" / "alive_animator" / "1"
SAMPLES = (REPO_ROOT / "samples" / "chelsea.jpg", REPO_ROOT / "samples" / "astronaut.jpg")
PROMPTS = (
    "make this photo come alive",
    "make it rain",
    "snow falling at night",
    "golden sunset with light rays",
    "fog and drifting clouds",
    "wink and smile",
)
LABEL_HEIGHT = 22


def animator_module(module: str) -> ModuleType:
    """One of the animator's modules, imported as Triton's python backend imports them."""
    if str(ANIMATOR_DIR) not in sys.path:
        sys.path.insert(0, str(ANIMATOR_DIR))
    return importlib.import_module(module)


def effects_line(prompt: str) -> str:
    """What the animator will do for ``prompt``, for people: from its vocabulary table (the
    one place that knows the words), without loading the rest of the animator."""
    return str(animator_module("animator_vocabulary").describe(prompt))


def contact_sheet(
    photo: npt.NDArray[np.uint8],
    prompts: Sequence[str],
    *,
    width: int = 576,
    height: int = 1024,
    seconds: float = 4.0,
    fps: int = 24,
    columns: int = 6,
    seed: int = 1,
    thumb_width: int = 144,
) -> Image.Image:
    """One row per prompt: ``columns`` frames spread over the video, shrunk to thumbnails."""
    render, vocabulary = animator_module("animator_render"), animator_module("animator_vocabulary")
    count = max(1, round(seconds * fps))
    picks = np.linspace(0, count - 1, columns).round().astype(int)
    thumb_height = round(height * thumb_width / width)
    sheet = Image.new("RGB", (columns * thumb_width, len(prompts) * (thumb_height + LABEL_HEIGHT)))
    draw = ImageDraw.Draw(sheet)
    for row, prompt in enumerate(prompts):
        frames = render.animate(photo, prompt, seed, count, fps, width, height)
        top = row * (thumb_height + LABEL_HEIGHT)
        chosen = ", ".join(vocabulary.select_effects(prompt)) or "default motion"
        draw.text((4, top + 4), f"{prompt!r} -> {chosen}", fill=(255, 255, 255))
        for column, index in enumerate(picks):
            thumb = Image.fromarray(frames[index]).resize(
                (thumb_width, thumb_height), Image.Resampling.LANCZOS
            )
            sheet.paste(thumb, (column * thumb_width, top + LABEL_HEIGHT))
    return sheet


def write_sheets(
    photos: Sequence[Path],
    prompts: Sequence[str],
    out_dir: Path,
    *,
    width: int = 576,
    height: int = 1024,
    seconds: float = 4.0,
    seed: int = 1,
) -> list[Path]:
    """A contact sheet PNG per photo under ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in photos:
        photo = np.asarray(Image.open(path).convert("RGB"))
        sheet = contact_sheet(
            photo, prompts, width=width, height=height, seconds=seconds, seed=seed
        )
        target = out_dir / f"contact-{path.stem}.png"
        sheet.save(target)
        written.append(target)
    return written
