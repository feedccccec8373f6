"""Decodes one Triton request's batch into the pipeline's items, validated.

``read_batch`` takes one keyword per input tensor, named as config.pbtxt names it,
lower-cased. A bad item refuses the whole request before anything is generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.generic]

MAX_SIDE = 2048
MAX_FRAMES = 257
MAX_STEPS = 200
MAX_GUIDANCE = 30.0


class InvalidInput(ValueError):
    """The request cannot be served as asked; the message says why."""


@dataclass(frozen=True)
class Item:
    image: npt.NDArray[np.uint8]
    prompt: str
    negative_prompt: str
    seed: int
    num_frames: int
    fps: int
    steps: int
    guidance: float

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)."""
        return self.image.shape[0], self.image.shape[1]


def read_batch(
    image: Array,
    prompt: Array,
    negative_prompt: Array,
    seed: Array,
    num_frames: Array,
    fps: Array,
    steps: Array,
    guidance: Array,
) -> list[Item]:
    if image.ndim != 4 or image.shape[3] != 3 or image.dtype != np.uint8:
        raise InvalidInput(
            f"IMAGE must be uint8 [batch, H, W, 3], got {image.dtype} {list(image.shape)}"
        )
    batch = image.shape[0]
    columns = {
        "PROMPT": prompt,
        "NEGATIVE_PROMPT": negative_prompt,
        "SEED": seed,
        "NUM_FRAMES": num_frames,
        "FPS": fps,
        "STEPS": steps,
        "GUIDANCE": guidance,
    }
    for name, column in columns.items():
        if column.reshape(-1).shape[0] != batch:
            raise InvalidInput(f"{name} must have one value per item ({batch}), got {column.size}")
    items = [
        Item(
            image=np.ascontiguousarray(image[i]),
            prompt=_text(prompt.reshape(-1)[i], "PROMPT"),
            negative_prompt=_text(negative_prompt.reshape(-1)[i], "NEGATIVE_PROMPT"),
            seed=int(seed.reshape(-1)[i]),
            num_frames=int(num_frames.reshape(-1)[i]),
            fps=int(fps.reshape(-1)[i]),
            steps=int(steps.reshape(-1)[i]),
            guidance=float(guidance.reshape(-1)[i]),
        )
        for i in range(batch)
    ]
    for item in items:
        check(item)
    return items


def check(item: Item) -> None:
    height, width = item.size
    if not (32 <= height <= MAX_SIDE and 32 <= width <= MAX_SIDE):
        raise InvalidInput(f"IMAGE must be 32..{MAX_SIDE} pixels a side, got {width}x{height}")
    if not 1 <= item.num_frames <= MAX_FRAMES:
        raise InvalidInput(f"NUM_FRAMES must be 1..{MAX_FRAMES}, got {item.num_frames}")
    if not 1 <= item.fps <= 60:
        raise InvalidInput(f"FPS must be 1..60, got {item.fps}")
    if not 1 <= item.steps <= MAX_STEPS:
        raise InvalidInput(f"STEPS must be 1..{MAX_STEPS}, got {item.steps}")
    if not 0.0 <= item.guidance <= MAX_GUIDANCE:
        raise InvalidInput(f"GUIDANCE must be 0..{MAX_GUIDANCE}, got {item.guidance}")


def _text(value: object, name: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidInput(f"{name} must be bytes (UTF-8)")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{name} is not UTF-8") from exc
