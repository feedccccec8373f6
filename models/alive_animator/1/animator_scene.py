"""What the animator knows about a photo: its subject (people by mediapipe's segmentation,
animals and other things by GrabCut from the centre), faces with landmarks, and cheap image
analysis on a small copy: sky, water, foliage, a depth proxy, the horizon, the light.

The maps live on a small grid (``grid_scale`` photo pixels per cell); the renderer samples
them along its camera path, so they are never resized to the full frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from animator_subjects import EYES, Array, Face, face_boxes, find_faces, person_mask

GRID_SIDE = 192  # the analysis grid's longer side, cells
# Map channels (``Scene.maps``): depth 0 far .. 1 near; the subject; the sky; water.
DEPTH, SUBJECT, SKY, WATER = range(4)


def smoothstep(edge0: float, edge1: float, x: Array) -> Array:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def soften(grid: Array, sigma: float) -> Array:
    """Gaussian blur of a float map, sigma in cells (edges replicated)."""
    out: Array = cv2.GaussianBlur(
        grid.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE
    )
    return out


@dataclass(frozen=True)
class Scene:
    """The analysis of one photo, in that photo's pixels (maps on a grid ``grid_scale`` times
    smaller)."""

    maps: Array  # [gh, gw, 4] float32: DEPTH, SUBJECT, SKY, WATER
    foliage: Array  # [gh, gw] float32, 0..1: what sways in the wind
    grid_scale: float
    faces: list[Face]  # near enough for landmarks: these come alive
    face_boxes: list[tuple[float, float, float, float]]  # every face, near or far
    subject_box: tuple[float, float, float, float] | None  # left, top, right, bottom
    horizon: float  # fraction of the height where the sky ends (0: no sky)
    light_xy: tuple[float, float]  # brightest soft spot in the upper part, fractions
    sky_rgb: Array  # mean colour of the sky, 0..255


def analyse(photo: Array, wants_water: bool = False) -> Scene:
    """Everything the renderer needs to know about ``photo`` (H x W x 3 RGB uint8). With
    ``wants_water`` (the prompt asks for it) and no water found, the ground below the
    horizon is taken for water: the best guess at what the person meant."""
    height, width = photo.shape[:2]
    scale = max(1.0, max(height, width) / GRID_SIDE)
    gw, gh = max(4, round(width / scale)), max(4, round(height / scale))
    small = cv2.resize(photo, (gw, gh), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    lum = small @ np.array([0.299, 0.587, 0.114], np.float32)
    v = ((np.arange(gh, dtype=np.float32) + 0.5) / gh)[:, None]

    soft = soften(lum, 1)
    grad = np.abs(cv2.Sobel(soft, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(soft, cv2.CV_32F, 0, 1))
    texture = soften(grad, 2)
    texture = np.clip(texture / max(float(np.percentile(texture, 95)), 1e-3), 0, 1)

    big_enough = min(height, width) >= 64
    faces = find_faces(photo) if big_enough else []
    boxes = face_boxes(photo) if big_enough else []
    subject = _subject(photo, small)

    # Sky: bright, smooth, near the top, and only where everything above it is sky too.
    sky = (
        (1 - smoothstep(0.3, 0.7, v))
        * (1 - smoothstep(0.15, 0.45, texture))
        * (0.4 + 0.6 * smoothstep(0.15, 0.55, lum))
        * (1 - subject)
    )
    sky = soften(np.minimum.accumulate(sky, axis=0), 1.5)
    sky = np.clip((sky - 0.05) / 0.95, 0, 1)

    sky_per_row = sky.mean(axis=1)
    below = np.nonzero(sky_per_row < 0.5 * max(float(sky_per_row.max()), 1e-6))[0]
    horizon = float(below[0]) / gh if len(below) and sky_per_row.max() > 0.05 else 0.0
    weight = float(sky.sum())
    sky_rgb = (
        (small * sky[..., None]).sum(axis=(0, 1)) / weight * 255
        if weight > 1
        else np.array([200.0, 205.0, 215.0])
    )

    # Water: below the horizon, smooth, and the sky's colour or blue.
    below_horizon = (
        smoothstep(horizon, horizon + 0.08, v) if horizon > 0 else smoothstep(0.55, 0.7, v)
    )
    blue = smoothstep(0.02, 0.12, small[..., 2] - small[..., 0])
    like_sky = 1 - smoothstep(0.1, 0.25, np.abs(small - sky_rgb / 255).mean(axis=2))
    water = below_horizon * (1 - smoothstep(0.2, 0.5, texture)) * np.maximum(blue, like_sky)
    if wants_water and water.mean() < 0.02:
        water = below_horizon * smoothstep(0.5, 0.7, v)
    water = soften(water * (1 - subject), 2)

    red, green, blue_c = small[..., 0], small[..., 1], small[..., 2]
    greenish = smoothstep(0.0, 0.06, green - np.maximum(red, blue_c) * 0.95)
    foliage = soften(greenish * smoothstep(0.1, 0.4, texture) * (1 - sky) * (1 - subject), 1.5)
    foliage = np.maximum(foliage, _hair(faces, subject, width / gw))

    # Depth proxy: lower is nearer, detail nearer, the subject nearest, the sky farthest.
    depth = (0.65 * v**1.5 + 0.2 * texture + 0.15 * soften(subject, 3)) * (1 - 0.9 * sky)
    depth = soften(depth, 6)
    depth = (depth - depth.min()) / max(float(depth.max() - depth.min()), 1e-6)
    depth = np.maximum(depth, soften(subject, 1.5))

    upper = soften(lum, 6)[: max(1, int(gh * 0.6))]
    ly, lx = np.unravel_index(int(np.argmax(upper)), upper.shape)
    ys, xs = np.nonzero(subject > 0.5)
    box = (
        (float(xs.min()) * scale, float(ys.min()) * scale, float(xs.max() + 1) * scale,
         float(ys.max() + 1) * scale)
        if len(xs) else None
    )  # fmt: skip
    maps = np.stack([depth, soften(subject, 1.0), sky, water], axis=2).astype(np.float32)
    return Scene(
        maps=np.ascontiguousarray(maps),
        foliage=foliage.astype(np.float32),
        grid_scale=width / gw,
        faces=faces,
        face_boxes=boxes + [face.box() for face in faces],
        subject_box=box,
        horizon=horizon,
        light_xy=(float(lx + 0.5) / gw, float(ly + 0.5) / gh),
        sky_rgb=sky_rgb.astype(np.float32),
    )


def _hair(faces: list[Face], subject: Array, scale: float) -> Array:
    """0..1 on the grid: the subject above and beside each face's eyes (hair, a hat), which
    the wind moves like foliage."""
    gh, gw = subject.shape
    rows = (np.arange(gh, dtype=np.float32)[:, None] + 0.5) * scale
    columns = (np.arange(gw, dtype=np.float32)[None, :] + 0.5) * scale
    hair = np.zeros((gh, gw), np.float32)
    for face in faces:
        left, top, right, bottom = face.box()
        eyes = float(face.points[list(EYES[0][:2]) + list(EYES[1][:2]), 1].mean())
        reach = 0.35 * (right - left)
        above = 1 - smoothstep(eyes - 0.1 * (bottom - top), eyes + 0.1 * (bottom - top), rows)
        beside = smoothstep(left - reach, left, columns) * (
            1 - smoothstep(right, right + reach, columns)
        )
        hair = np.maximum(hair, above * beside * subject)
    return hair


def _subject(photo: Array, small: Array) -> Array:
    """0..1 on the grid: a person if mediapipe finds one, else GrabCut's foreground from a
    centred box (animals, objects), if it is a plausible share of the photo; else nothing.

    The person segmenter also marks a close-up animal (the sample cat): that is the subject
    in front too, so it is kept (face effects use the face models, not this mask)."""
    gh, gw = small.shape[:2]
    people = cv2.resize(person_mask(photo), (gw, gh), interpolation=cv2.INTER_AREA)
    if (people > 0.5).mean() > 0.02:
        return np.clip(people, 0, 1)
    rgb8 = (small * 255).astype(np.uint8)
    mask = np.zeros((gh, gw), np.uint8)
    rect = (round(gw * 0.12), round(gh * 0.1), round(gw * 0.76), round(gh * 0.85))
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's clustering draws from OpenCV's RNG: same photo, same mask
    cv2.grabCut(rgb8, mask, rect, background, foreground, 3, cv2.GC_INIT_WITH_RECT)
    found = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.float32)
    # Keep the largest blob: a subject is one thing.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(found.astype(np.uint8))
    if count <= 1:
        return np.zeros((gh, gw), np.float32)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    found = (labels == largest).astype(np.float32)
    if not 0.04 <= found.mean() <= 0.7:
        return np.zeros((gh, gw), np.float32)
    return soften(found, 1.0)
