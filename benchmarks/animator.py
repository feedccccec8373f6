"""The embedded animator alone, in process (the code Triton runs): CPU time per frame at the
default output (576x1024, 96 frames, without encoding) for prompts that exercise each kind of
effect, and its one-off set-up per video (photo analysis, face and person models). Then the
contact sheets (a row of frames per prompt, per sample photo) under out/, for a person to
look at.

The budget (issue 10): animation per frame within twice procedural-animator-1's, which
measured 25-27 ms of CPU per frame on the 2-core development machine (docs/animator.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from alive_tools.contact_sheets import PROMPTS, SAMPLES, animator_module, write_sheets
from services.generator.framing import reduce_for_camera

WIDTH, HEIGHT, FRAMES, FPS = 576, 1024, 96, 24


def animator_cpu(prompts: tuple[str, ...] = PROMPTS) -> dict[str, dict[str, float]]:
    """Per sample photo and prompt: set-up and per-frame CPU milliseconds (all threads)."""
    render = animator_module("animator_render")
    results: dict[str, dict[str, float]] = {}
    for path in SAMPLES:
        photo = reduce_for_camera(Image.open(path), WIDTH, HEIGHT)
        render.animate(photo, "warm up", 0, 1, FPS, WIDTH, HEIGHT)  # loads the face models
        for prompt in prompts:
            started = time.process_time()
            renderer = render.prepare(photo, prompt, 1, WIDTH, HEIGHT)
            setup = time.process_time() - started
            frame = np.empty((HEIGHT, WIDTH, 3), np.uint8)
            started = time.process_time()
            for i in range(FRAMES):
                renderer.render(i / FPS, frame)
            per_frame = (time.process_time() - started) / FRAMES
            results[f"{path.stem}: {prompt}"] = {
                "setup_cpu_ms": round(1000 * setup, 1),
                "per_frame_cpu_ms": round(1000 * per_frame, 2),
            }
    return results


def contact_sheets(out_dir: Path) -> list[str]:
    return [str(path) for path in write_sheets(SAMPLES, PROMPTS, out_dir)]
