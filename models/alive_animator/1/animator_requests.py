"""Decodes one Triton request's batch into the animator's inputs, validated.

``read_batch`` takes one keyword per input tensor, named as config.pbtxt names it, lower-cased.
Items are checked by the renderer's own ``check_inputs``; only what concerns the batch as a
whole (its layout, one length for all) is checked here.
"""

from __future__ import annotations

from dataclasses import dataclass

from animator_render import InvalidInput, check_inputs
from animator_subjects import Array


@dataclass(frozen=True)
class Job:
    """One item of a request's batch, decoded."""

    image: Array
    prompt: str
    seed: int
    num_frames: int
    fps: int
    width: int  # 0: the photo's
    height: int


def read_batch(
    image: Array,
    prompt: Array,
    seed: Array,
    num_frames: Array,
    fps: Array,
    width: Array | None = None,
    height: Array | None = None,
) -> list[Job]:
    """The items of one request's batch (arrays as Triton hands them over), or InvalidInput.

    A bad item refuses the whole request before any item is rendered (that takes seconds each).
    """
    if image.ndim != 4:  # [batch, ...], else there are no items to take apart
        raise InvalidInput(f"IMAGE must be [batch, H, W, 3], got {list(image.shape)}")
    batch = image.shape[0]

    def size(side: Array | None, i: int) -> int:
        return 0 if side is None else int(side.reshape(batch, -1)[i, 0])

    jobs = [
        Job(
            image=image[i],
            prompt=_text(prompt.reshape(batch, -1)[i, 0]),
            seed=int(seed.reshape(batch, -1)[i, 0]),
            num_frames=int(num_frames.reshape(batch, -1)[i, 0]),
            fps=int(fps.reshape(batch, -1)[i, 0]),
            width=size(width, i),
            height=size(height, i),
        )
        for i in range(batch)
    ]
    for job in jobs:
        check_inputs(job.image, job.num_frames, job.fps, job.width, job.height)
    if len({job.num_frames for job in jobs}) > 1:
        # FRAMES of one request is one tensor, so its items must agree on the length.
        raise InvalidInput("NUM_FRAMES must be the same for every item of a request")
    if len({(job.width, job.height) for job in jobs}) > 1:
        raise InvalidInput("WIDTH and HEIGHT must be the same for every item of a request")
    return jobs


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
