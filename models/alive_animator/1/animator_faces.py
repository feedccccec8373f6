"""Faces come alive: blinks, a wink, a smile and a small head tilt, by warping the photo along
the face mesh's landmarks.

Each face is redrawn every frame into the working copy of the photo, inside a box around it,
from the untouched photo: a backward map (where each pixel of the box takes its colour from)
built from closed-form displacements. Eyelids close by stretching the skin above the lid down
over the eye (and darkening the lash line); mouth corners move up and out; the head turns
about the chin, fading out at the face's edge so the background never tears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from animator_scene import smoothstep
from animator_subjects import CHIN, EYES, MOUTH_CORNERS, Array, Face
from animator_vocabulary import Plan

BLINK_S = 0.28  # one natural blink, closed and open again
WINK = (0.6, 0.85, 1.35, 1.65)  # seconds: starts closing, closed, starts opening, open


@dataclass(frozen=True)
class _Eye:
    top: int  # the eye's box inside the face box
    left: int
    along: Array  # per pixel of the eye box: position along the eye, -1 .. 1 at the corners
    across: Array  # distance below the eye's axis, pixels
    normal: tuple[float, float]  # the "down" direction across the eye
    upper: float  # the lids' distance from the axis at the eye's middle (upper < 0 < lower)
    lower: float
    skin: float  # height of the skin band above the lid that stretches over the eye
    lash: float  # thickness of the lash line


def blink_closure(plan: Plan, t: float) -> tuple[float, float]:
    """How closed each eye is at time t, 0 open .. 1 shut (first: the image's left eye)."""
    if plan.wink:
        a, b, c, d = WINK
        wink = float(smoothstep(a, b, np.array(t)) * (1 - smoothstep(c, d, np.array(t))))
        return wink, 0.0
    first = 0.7 + plan.phase / (2 * math.pi)
    since = (t - first) % plan.blink_every_s if t >= first else BLINK_S
    closed = math.sin(math.pi * since / BLINK_S) ** 0.6 if since < BLINK_S else 0.0
    return closed, closed


class FaceAnimator:
    """Redraws one face at time t into the working copy of the photo."""

    def __init__(self, photo: Array, face: Face, plan: Plan) -> None:
        self.photo, self.plan = photo, plan
        height, width = photo.shape[:2]
        left, top, right, bottom = face.box()
        pad_x, pad_y = 0.3 * (right - left), 0.3 * (bottom - top)
        self.x0, self.y0 = max(0, int(left - pad_x)), max(0, int(top - pad_y))
        self.x1, self.y1 = min(width, int(right + pad_x) + 1), min(height, int(bottom + pad_y) + 1)
        xs = np.arange(self.x0, self.x1, dtype=np.float32)
        ys = np.arange(self.y0, self.y1, dtype=np.float32)
        self.grid_x, self.grid_y = np.meshgrid(xs, ys)
        self.map_x, self.map_y = np.empty_like(self.grid_x), np.empty_like(self.grid_y)
        self.shade = np.ones_like(self.grid_x)

        points = face.points
        self.eyes = [self._eye(points[list(ids)]) for ids in EYES]
        mouth = points[list(MOUTH_CORNERS)]
        centre = mouth.mean(axis=0)
        mouth_width = float(np.linalg.norm(mouth[1] - mouth[0]))
        sigma = 0.28 * mouth_width
        self.smile = []
        for corner in mouth:
            outward = (corner - centre) / max(np.linalg.norm(corner - centre), 1e-6)
            # Up (towards the forehead, whatever the face's own tilt) and out.
            up = points[10] - points[CHIN]
            up = up / max(float(np.linalg.norm(up)), 1e-6)
            shift = mouth_width * (0.09 * up + 0.05 * outward)
            weight = np.exp(
                -((self.grid_x - corner[0]) ** 2 + (self.grid_y - corner[1]) ** 2) / (2 * sigma**2)
            ).astype(np.float32)
            self.smile.append((shift, weight))

        # The head turns about the chin; the weight is 1 on the face and fades past its oval.
        cx, cy = (left + right) / 2, (top + bottom) / 2
        rx, ry = 0.5 * (right - left), 0.5 * (bottom - top)
        r = np.sqrt(((self.grid_x - cx) / rx) ** 2 + ((self.grid_y - cy) / ry) ** 2)
        self.tilt_weight = smoothstep(1.45, 1.0, r).astype(np.float32)
        chin = points[CHIN]
        self.from_chin = (self.grid_x - chin[0], self.grid_y - chin[1])

    def _eye(self, corners: Array) -> _Eye:
        outer, inner, upper, lower = corners
        middle = (outer + inner) / 2
        half = max(float(np.linalg.norm(inner - outer)) / 2, 1.0)
        axis = (inner - outer) / (2 * half)
        normal = np.array([-axis[1], axis[0]])
        if float(np.dot(lower - upper, normal)) < 0:
            normal = -normal
        up_d, low_d = float(np.dot(upper - middle, normal)), float(np.dot(lower - middle, normal))
        skin = max(1.3 * (low_d - up_d), 0.45 * half)
        # The eye's box: corners plus a margin, the skin band above, a little below.
        reach = 1.3 * half + skin
        top = max(int(middle[1] - reach) - self.y0, 0)
        left = max(int(middle[0] - reach) - self.x0, 0)
        bottom = min(int(middle[1] + reach) + 1 - self.y0, self.grid_x.shape[0])
        right = min(int(middle[0] + reach) + 1 - self.x0, self.grid_x.shape[1])
        dx = self.grid_x[top:bottom, left:right] - middle[0]
        dy = self.grid_y[top:bottom, left:right] - middle[1]
        return _Eye(
            top=top,
            left=left,
            along=((dx * axis[0] + dy * axis[1]) / half).astype(np.float32),
            across=(dx * normal[0] + dy * normal[1]).astype(np.float32),
            normal=(float(normal[0]), float(normal[1])),
            upper=up_d,
            lower=low_d,
            skin=skin,
            lash=max(0.055 * half, 0.6),
        )

    def render(self, t: float, work: Array) -> None:
        """Writes the face at time t into ``work`` (the photo's working copy, same size)."""
        plan = self.plan
        np.copyto(self.map_x, self.grid_x)
        np.copyto(self.map_y, self.grid_y)
        ease = 1 - math.exp(-t / 0.6)
        angle = math.radians(plan.tilt_deg) * ease * math.sin(2 * math.pi * t / 4.5 + plan.phase)
        if angle:
            cos_m1, sin = math.cos(angle) - 1, math.sin(angle)
            rx, ry = self.from_chin
            self.map_x += self.tilt_weight * (cos_m1 * rx + sin * ry)
            self.map_y += self.tilt_weight * (-sin * rx + cos_m1 * ry)
        smile = plan.smile * float(smoothstep(0.3, 1.3, np.array(t)))
        for shift, weight in self.smile if smile else ():
            self.map_x -= (smile * shift[0]) * weight
            self.map_y -= (smile * shift[1]) * weight
        self.shade.fill(1.0)
        closures = blink_closure(plan, t)
        for eye, closure in zip(self.eyes, closures, strict=True):
            if closure > 0:
                self._close(eye, closure)
        box = (slice(self.y0, self.y1), slice(self.x0, self.x1))
        out = cv2.remap(
            self.photo, self.map_x, self.map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101
        )
        if any(closures):
            out = cv2.multiply(out, cv2.merge([self.shade] * 3), dtype=cv2.CV_8U)
        work[box] = out

    def _close(self, eye: _Eye, closure: float) -> None:
        """Moves the upper lid of ``eye`` down by ``closure`` of the way to the lower one."""
        bulge = np.clip(1 - eye.along**2, 0, 1)
        amount = closure * smoothstep(1.15, 0.75, np.abs(eye.along))
        upper, lower = eye.upper * bulge, eye.lower * bulge
        top = upper - eye.skin
        lid = upper + amount * (lower - upper)
        v = eye.across
        stretched = top + (v - top) * (upper - top) / np.maximum(lid - top, 1e-3)
        squeezed = upper + (v - lid) * (lower - upper) / np.maximum(lower - lid, 1e-3)
        source = np.where((v >= top) & (v <= lid), stretched, v)
        source = np.where((v > lid) & (v <= lower), squeezed, source)
        move = (source - v) * (amount > 0)
        rows = slice(eye.top, eye.top + v.shape[0])
        cols = slice(eye.left, eye.left + v.shape[1])
        self.map_x[rows, cols] += move * eye.normal[0]
        self.map_y[rows, cols] += move * eye.normal[1]
        lash = np.exp(-(((v - lid) / eye.lash) ** 2)) * amount * (bulge > 0)
        self.shade[rows, cols] *= 1 - 0.32 * lash
