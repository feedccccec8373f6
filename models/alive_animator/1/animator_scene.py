"""What the animator knows about a photo: a sky mask, a depth proxy (vertical position,
texture and centre), texture, the horizon and the brightest spot; plus the grid helpers the
renderer shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


def smoothstep(edge0: float, edge1: float, x: Array) -> Array:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def blur(grid: Array, passes: int, wrap_x: bool = False) -> Array:
    """Repeated [1, 2, 1] / 4 filter along both axes: a cheap Gaussian, sigma ~ sqrt(passes / 2)."""
    out = grid.astype(np.float32)
    for _ in range(passes):
        out = (np.vstack([out[:1], out[:-1]]) + 2 * out + np.vstack([out[1:], out[-1:]])) * 0.25
        if wrap_x:
            left, right = np.roll(out, 1, axis=1), np.roll(out, -1, axis=1)
        else:
            left = np.hstack([out[:, :1], out[:, :-1]])
            right = np.hstack([out[:, 1:], out[:, -1:]])
        out = (left + 2 * out + right) * 0.25
    return out


def _lerp_axis(src: int, dst: int) -> tuple[Array, Array, Array]:
    """Indices and weights that resample an axis of ``src`` cells to ``dst``, centres aligned."""
    pos = np.clip((np.arange(dst, dtype=np.float32) + 0.5) * (src / dst) - 0.5, 0, src - 1)
    lo = np.floor(pos).astype(np.intp)
    return lo, np.minimum(lo + 1, src - 1), (pos - lo).astype(np.float32)


def _upsample(grid: Array, height: int, width: int) -> Array:
    """Bilinear resize of a 2-D map (the analysis grid) to the full frame."""
    y0, y1, fy = _lerp_axis(grid.shape[0], height)
    x0, x1, fx = _lerp_axis(grid.shape[1], width)
    rows = grid[y0] * (1 - fy)[:, None] + grid[y1] * fy[:, None]
    # Column fancy-indexing can return a Fortran-ordered array, which slows every later op.
    return np.ascontiguousarray(rows[:, x0] * (1 - fx) + rows[:, x1] * fx, dtype=np.float32)


@dataclass(frozen=True)
class Scene:
    """What the animator knows about the photo, as full-size float32 maps."""

    depth: Array  # 0 far .. 1 near, smooth so the warp never tears
    sky: Array  # 0..1, only the top ``sky_rows`` rows can be non-zero
    sky_rows: int
    texture: Array  # 0..1 local detail (foliage sways, flat areas don't)
    horizon: float  # fraction of the height where the sky ends
    light_xy: tuple[float, float]  # brightest soft spot in the upper part, fractions
    sky_rgb: Array  # mean colour of the sky, 0..255


def analyse(image: Array) -> Scene:
    """Sky, depth proxy and light position, computed on a grid of ~64 cells across."""
    height, width = image.shape[:2]
    block = max(1, min(height, width) // 64)
    gh, gw = height // block, width // block
    cells = image[: gh * block, : gw * block].reshape(gh, block, gw, block, 3)
    small = cells.mean(axis=(1, 3), dtype=np.float32) / 255
    lum = small @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    v = ((np.arange(gh, dtype=np.float32) + 0.5) / gh)[:, None]
    u = ((np.arange(gw, dtype=np.float32) + 0.5) / gw)[None, :]

    soft = blur(lum, 1)
    grad = np.abs(np.diff(soft, axis=0, append=soft[-1:])) + np.abs(
        np.diff(soft, axis=1, append=soft[:, -1:])
    )
    texture = blur(grad, 2)
    texture = np.clip(texture / max(float(np.percentile(texture, 95)), 1e-3), 0, 1)

    # Sky: bright, smooth, near the top, and only where everything above it is sky too.
    sky = (
        (1 - smoothstep(0.3, 0.7, v))
        * (1 - smoothstep(0.15, 0.45, texture))
        * (0.4 + 0.6 * smoothstep(0.15, 0.55, lum))
    )
    sky = blur(np.minimum.accumulate(sky, axis=0), 2)
    sky = np.clip((sky - 0.05) / 0.95, 0, 1)  # exactly zero away from the sky, yet continuous

    # Depth proxy: lower is nearer, detail and the centre are nearer, the sky is farthest.
    centre = np.exp(-((u - 0.5) ** 2) / 0.08 - (v - 0.6) ** 2 / 0.12)
    depth = (0.6 * v**1.5 + 0.25 * texture + 0.15 * centre) * (1 - 0.9 * sky)
    depth = blur(depth, 24)
    depth = (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)

    sky_per_row = sky.mean(axis=1)
    below = np.nonzero(sky_per_row < 0.5 * max(float(sky_per_row.max()), 1e-6))[0]
    horizon = float(below[0]) / gh if len(below) and sky_per_row.max() > 0.05 else 0.0

    upper = blur(lum, 6)[: max(1, int(gh * 0.6))]
    ly, lx = np.unravel_index(int(np.argmax(upper)), upper.shape)
    weight = float(sky.sum())
    sky_rgb = (
        (small * sky[..., None]).sum(axis=(0, 1)) / weight * 255
        if weight > 1
        else np.array([200.0, 205.0, 215.0])
    )

    sky_full = _upsample(sky, height, width)
    has_sky = np.nonzero(sky_full.max(axis=1) > 0.01)[0]
    sky_rows = int(has_sky[-1]) + 1 if len(has_sky) else 0
    sky_full[sky_rows:] = 0
    return Scene(
        depth=_upsample(depth, height, width),
        sky=sky_full,
        sky_rows=sky_rows,
        texture=_upsample(texture * (1 - sky), height, width),
        horizon=horizon,
        light_xy=cast(tuple[float, float], ((lx + 0.5) / gw, (ly + 0.5) / gh)),
        sky_rgb=sky_rgb.astype(np.float32),
    )
