"""Atmosphere the prompt asks for: falling rain and snow, twinkling stars and sparkles (drawn
as particles, sharp, at full size), and the colour grades (sunset, night, rain's grey).

Particles live in frame coordinates, except stars, which belong to the photo's sky and move
with the camera. Every particle's start, speed and size is drawn once from the plan's noise
seed, and its position is a function of time: the same seed gives the same weather.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from animator_subjects import Array
from animator_vocabulary import Plan

# Colour matrices (rows: R, G, B out; columns: R, G, B in) the grades move towards.
_SUNSET = np.array([[1.08, 0.05, 0.0], [0.02, 0.95, 0.0], [0.0, 0.02, 0.78]], np.float32)
_NIGHT = np.array([[0.28, 0.08, 0.02], [0.06, 0.34, 0.06], [0.08, 0.14, 0.52]], np.float32)
_RAINY = np.array([[0.78, 0.07, 0.05], [0.05, 0.8, 0.06], [0.05, 0.08, 0.86]], np.float32)


def grade_matrix(plan: Plan, rise: float, t: float) -> Array:
    """The colour matrix (3 x 4: matrix and offset) of the frame at time t; ``rise`` eases the
    grade in from the photo's own colours."""
    target = np.eye(3, dtype=np.float32)
    offset = np.zeros(3, np.float32)
    if plan.grade == "sunset":
        target, offset = _SUNSET, np.array([10.0, 2.0, -6.0], np.float32)
    elif plan.grade == "night":
        target, offset = _NIGHT, np.array([0.0, 2.0, 8.0], np.float32)
    if plan.rain or plan.fog:
        target = _RAINY @ target
    # A slow breath of the light, so even a plain prompt's frames are never quite still.
    breathe = 1 + 0.012 * rise * math.sin(2 * math.pi * 0.11 * t + plan.phase)
    matrix = (np.eye(3, dtype=np.float32) * (1 - rise) + target * rise) * breathe
    return np.hstack([matrix, (offset * rise)[:, None]]).astype(np.float32)


class Particles:
    """Rain, snow and sparkles in frame coordinates, drawn onto an additive layer."""

    def __init__(self, plan: Plan, width: int, height: int) -> None:
        self.plan, self.width, self.height = plan, width, height
        rng = np.random.default_rng(plan.noise_seed)
        unit = width / 576  # sizes are tuned at the default width
        area = width * height
        rain_count = int(plan.rain * area / 900)
        self.rain_start = rng.uniform(0, 1, (rain_count, 2)).astype(np.float32)
        self.rain_speed = rng.uniform(1.3, 2.0, rain_count).astype(np.float32) * height
        self.rain_length = rng.uniform(0.025, 0.05, rain_count).astype(np.float32) * height
        self.rain_shade = rng.uniform(55, 120, rain_count).astype(np.float32)
        self.rain_slant = 0.12 * (1 if plan.cloud_speed >= 0 else -1)
        snow_count = int(plan.snow * area / 1400)
        self.snow_start = rng.uniform(0, 1, (snow_count, 2)).astype(np.float32)
        near = rng.uniform(0, 1, snow_count).astype(np.float32) ** 2  # mostly far, small
        self.snow_radius = (1.0 + 3.0 * near) * unit
        self.snow_speed = (0.05 + 0.12 * near) * height
        self.snow_sway = rng.uniform(0.3, 0.7, (snow_count, 2)).astype(np.float32)
        self.snow_shade = 170 + 85 * near
        sparkle_count = int(plan.sparkles * 45)
        self.sparkle_xy = rng.uniform(0.05, 0.95, (sparkle_count, 2)).astype(np.float32)
        self.sparkle_rate = rng.uniform(0.3, 0.8, sparkle_count).astype(np.float32)
        self.sparkle_phase = rng.uniform(0, 1, sparkle_count).astype(np.float32)
        self.sparkle_size = rng.uniform(3, 8, sparkle_count).astype(np.float32) * unit
        self.active = rain_count + snow_count + sparkle_count > 0

    def draw(self, t: float, layer: Array) -> None:
        """Draws the particles at time t onto ``layer`` (H x W x 3 uint8, cleared here)."""
        layer.fill(0)
        width, height, aa = self.width, self.height, cv2.LINE_AA
        if len(self.rain_speed):
            span = height * 1.1
            ys = (self.rain_start[:, 1] * span + self.rain_speed * t) % span - 0.05 * height
            xs = (self.rain_start[:, 0] * width + self.rain_slant * ys) % width
            dx, dy = self.rain_slant * self.rain_length, self.rain_length
            for x, y, ddx, ddy, shade in zip(xs, ys, dx, dy, self.rain_shade, strict=True):
                colour = (float(shade), float(shade) + 6, float(shade) + 14)
                cv2.line(layer, (int(x), int(y)), (int(x + ddx), int(y + ddy)), colour, 1, aa)
        if len(self.snow_speed):
            span = height * 1.05
            ys = (self.snow_start[:, 1] * span + self.snow_speed * t) % span - 0.025 * height
            sway = np.sin(2 * np.pi * self.snow_sway[:, 0] * t + 6.3 * self.snow_sway[:, 1])
            xs = (self.snow_start[:, 0] * width + 0.02 * width * sway) % width
            for x, y, radius, shade in zip(xs, ys, self.snow_radius, self.snow_shade, strict=True):
                centre = (int(x * 4), int(y * 4))  # 2 fractional bits: smooth slow motion
                colour = (float(shade),) * 3
                cv2.circle(layer, centre, int(radius * 4), colour, -1, aa, shift=2)
        for (u, v), rate, phase, size in zip(
            self.sparkle_xy, self.sparkle_rate, self.sparkle_phase, self.sparkle_size, strict=True
        ):
            glint = max(0.0, math.sin(2 * math.pi * (rate * t + phase))) ** 3
            if glint < 0.05:
                continue
            x, y, arm = int(u * width), int(v * height), int(size * glint) + 1
            colour = (255 * glint, 240 * glint, 200 * glint)
            cv2.line(layer, (x - arm, y), (x + arm, y), colour, 1, aa)
            cv2.line(layer, (x, y - arm), (x, y + arm), colour, 1, aa)
            cv2.circle(layer, (x, y), max(1, arm // 3), colour, -1, aa)


class Stars:
    """Twinkling points in the photo's sky (photo coordinates, so they move with the camera)."""

    def __init__(self, plan: Plan, sky: Array, grid_scale: float) -> None:
        rng = np.random.default_rng(plan.noise_seed + 1)
        gh, gw = sky.shape
        candidates = rng.uniform(0, 1, (int(plan.stars * 900), 2)).astype(np.float32)
        cells = (candidates * [gw - 1, gh - 1]).astype(np.intp)
        keep = sky[cells[:, 1], cells[:, 0]] > 0.6
        self.xy = candidates[keep] * np.array([gw, gh], np.float32) * grid_scale
        self.phase = rng.uniform(0, 2 * math.pi, len(candidates)).astype(np.float32)[keep]
        self.shade = rng.uniform(90, 255, len(candidates)).astype(np.float32)[keep]

    def draw(self, t: float, to_frame: tuple[float, float, float], layer: Array) -> None:
        """Adds the stars to ``layer``; ``to_frame`` is (scale, offset x, offset y) from photo
        to frame pixels."""
        scale, ox, oy = to_frame
        height, width = layer.shape[:2]
        twinkle = 0.65 + 0.35 * np.sin(3.1 * t + self.phase)
        for (x, y), shade in zip(self.xy * scale + [ox, oy], self.shade * twinkle, strict=True):
            if 0 <= x < width and 0 <= y < height:
                layer[int(y), int(x)] = float(shade)
