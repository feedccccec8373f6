"""Decodes one Triton request's batch into the animator's inputs, validated."""

from __future__ import annotations

from dataclasses import dataclass

from animator_render import InvalidInput, check_request
from animator_scene import Array


@dataclass(frozen=True)
class Job:
    """One item of a request's batch, decoded."""

    image: Array
    prompt: str
    seed: int
    num_frames: int
    fps: int


def read_batch(
    image: Array, prompt: Array, seed: Array, num_frames: Array, fps: Array
) -> list[Job]:
    """The items of one request's batch (arrays as Triton hands them over), or InvalidInput."""
    if image.ndim != 4 or image.shape[3] != 3:
        raise InvalidInput(f"IMAGE must be [batch, H, W, 3], got {list(image.shape)}")
    batch = image.shape[0]
    jobs = [
        Job(
            image=image[i],
            prompt=_text(prompt.reshape(batch, -1)[i, 0]),
            seed=int(seed.reshape(batch, -1)[i, 0]),
            num_frames=int(num_frames.reshape(batch, -1)[i, 0]),
            fps=int(fps.reshape(batch, -1)[i, 0]),
        )
        for i in range(batch)
    ]
    for job in jobs:
        check_request(job.image.shape[0], job.image.shape[1], job.num_frames, job.fps)
    if len({job.num_frames for job in jobs}) > 1:
        # FRAMES of one request is one tensor, so its items must agree on the length.
        raise InvalidInput("NUM_FRAMES must be the same for every item of a request")
    return jobs


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
