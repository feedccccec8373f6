"""A diffusers image-to-video pipeline, loaded from a local folder and run over batches.

Items that share frames, steps, guidance and size run in ONE pipeline call (a batch costs
less than its items one by one); each item keeps its own seeded generator, so its video
does not depend on what it was batched with. A size or length the checkpoint cannot take
is generated at the next one it can and then cut (frames) or scaled (size) to what was
asked. bf16 on a GPU, fp32 on CPU. Nothing is downloaded: ``local_files_only``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from i2v_requests import Item
from PIL import Image

Frames = npt.NDArray[np.uint8]


# on_step(indices of the items in the call, steps done, steps in all)
StepReport = Callable[[Sequence[int], int, int], None]


class Cancelled(Exception):
    """Every request of a group was cancelled: generation stopped between steps."""


@dataclass(frozen=True)
class Sizes:
    """What the checkpoint takes: frames = frame_multiple * k + frame_offset, sides in
    multiples of size_multiple."""

    frame_multiple: int
    frame_offset: int
    size_multiple: int

    def frames(self, wanted: int) -> int:
        steps = max(0, math.ceil((wanted - self.frame_offset) / self.frame_multiple))
        return steps * self.frame_multiple + self.frame_offset

    def side(self, wanted: int) -> int:
        return math.ceil(wanted / self.size_multiple) * self.size_multiple


class VideoPipeline:
    def __init__(
        self, pipeline_class: str, weights: Path, sizes: Sizes, max_sequence_length: int
    ) -> None:
        import diffusers
        import torch

        if not weights.is_dir():
            raise FileNotFoundError(f"no pipeline folder at {weights!r} (weights_path)")
        cls = getattr(diffusers, pipeline_class, None)
        if cls is None:
            raise ValueError(f"diffusers has no pipeline class {pipeline_class!r}")
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.pipe: Any = cls.from_pretrained(str(weights), local_files_only=True, dtype=dtype)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.sizes = sizes
        self.max_sequence_length = max_sequence_length

    def generate(
        self,
        items: Sequence[Item],
        cancelled: Callable[[], bool] = lambda: False,
        on_step: StepReport = lambda indices, done, total: None,
    ) -> list[Frames]:
        """Each item's frames [num_frames, H, W, 3] uint8, in order; one pipeline call per
        group of items that share frames, steps, guidance and size. After each denoising
        step, ``on_step(indices of the group's items, steps done, steps in all)``."""
        groups: dict[tuple[int, int, float, tuple[int, int]], list[int]] = {}
        for index, item in enumerate(items):
            key = (item.num_frames, item.steps, item.guidance, item.size)
            groups.setdefault(key, []).append(index)
        videos: dict[int, Frames] = {}
        for indices in groups.values():
            group = [items[i] for i in indices]
            made = self._call(group, cancelled, partial(on_step, indices))
            for index, frames in zip(indices, made, strict=True):
                videos[index] = frames
        return [videos[i] for i in range(len(items))]

    def _call(
        self,
        group: Sequence[Item],
        cancelled: Callable[[], bool],
        on_step: Callable[[int, int], None],
    ) -> list[Frames]:
        import torch

        first = group[0]
        height, width = first.size
        gen_h, gen_w = self.sizes.side(height), self.sizes.side(width)
        gen_frames = self.sizes.frames(first.num_frames)

        def between_steps(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            if cancelled():
                raise Cancelled(f"cancelled at step {step}")
            on_step(step + 1, first.steps)
            return tensors

        result = self.pipe(
            image=[Image.fromarray(item.image).resize((gen_w, gen_h)) for item in group],
            prompt=[item.prompt for item in group],
            negative_prompt=[item.negative_prompt for item in group],
            num_frames=gen_frames,
            height=gen_h,
            width=gen_w,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
            generator=[torch.Generator(self.device).manual_seed(item.seed) for item in group],
            max_sequence_length=self.max_sequence_length,
            output_type="np",
            callback_on_step_end=between_steps,
        )
        return [
            _fitted(np.asarray(video), first.num_frames, height, width) for video in result.frames
        ]


def _fitted(video: npt.NDArray[np.floating[Any]], frames: int, height: int, width: int) -> Frames:
    """The pipeline's float frames in [0, 1] as uint8, cut and scaled to what was asked."""
    pixels = (np.clip(video[:frames], 0.0, 1.0) * 255.0).round().astype(np.uint8)
    if pixels.shape[1:3] == (height, width):
        return pixels
    return np.stack(
        [
            np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.BICUBIC))
            for frame in pixels
        ]
    )
