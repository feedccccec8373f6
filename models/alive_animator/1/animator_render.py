"""Renders frames: a virtual camera moving across the photo, the subject breathing and swaying
in front of its background (parallax), faces blinking or smiling, water rippling, foliage in
the wind, and the atmosphere the prompt asks for.

``animate`` is the one entry point; ``check_inputs`` is the one place its inputs are checked
(animate runs it, and so does request decoding, to refuse a whole batch before rendering any of
it). Motion is a function of time in seconds, so fps only changes how it is sampled; the same
(photo, prompt, seed, size, num_frames, fps) gives bit-identical frames.

Framing: the photo is scaled to cover the frame with a little room to zoom, and the camera
travels across it on an eased path (``fill``), keeping faces in view. A photo whose faces
would not fit in the frame together is shown whole over a blurred, enlarged copy of itself
instead (``surround``); ``auto`` picks between the two.

Per frame, the smooth parts (where each pixel comes from, cloud and fog cover, light) are
computed on a grid a quarter of the frame's size and resized; only the photo's sampling, the
blend and the particles touch every pixel, and all buffers are allocated once.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from animator_effects import Particles, Stars, grade_matrix
from animator_faces import FaceAnimator
from animator_scene import DEPTH, SKY, SUBJECT, WATER, Scene, analyse, smoothstep, soften
from animator_subjects import Array, face_boxes
from animator_vocabulary import Plan, plan_motion

MAX_FRAMES = 600
MAX_FPS = 60
MIN_SIDE = 16
MAX_SIDE = 4096
FRAMINGS = ("auto", "fill", "surround")
LOW_RES = 4  # the smooth parts are computed on a grid this many times smaller


class InvalidInput(ValueError):
    """A request the model cannot animate; the message says which input and why."""


def check_inputs(image: Array, num_frames: int, fps: int, width: int = 0, height: int = 0) -> None:
    """Raises InvalidInput unless ``animate`` can take this photo at this length, rate and
    output size (0: the photo's own)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"IMAGE must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    photo_h, photo_w = image.shape[:2]
    if min(photo_h, photo_w) < MIN_SIDE or max(photo_h, photo_w) > MAX_SIDE:
        raise InvalidInput(
            f"IMAGE sides must be {MIN_SIDE}..{MAX_SIDE} pixels, got {photo_w}x{photo_h}"
        )
    for name, side in (("WIDTH", width), ("HEIGHT", height)):
        if side and not MIN_SIDE <= side <= MAX_SIDE:
            raise InvalidInput(
                f"{name} must be 0 (the photo's) or {MIN_SIDE}..{MAX_SIDE}, got {side}"
            )
    if not 1 <= num_frames <= MAX_FRAMES:
        raise InvalidInput(f"NUM_FRAMES must be 1..{MAX_FRAMES}, got {num_frames}")
    if not 1 <= fps <= MAX_FPS:
        raise InvalidInput(f"FPS must be 1..{MAX_FPS}, got {fps}")


def ease(x: float) -> float:
    """0 -> 1 with zero speed at both ends (smootherstep), clamped."""
    x = min(max(x, 0.0), 1.0)
    return x * x * x * (x * (6 * x - 15) + 10)


def frame_photo(
    photo: Array, width: int, height: int, plan: Plan, framing: str
) -> tuple[Array, str]:
    """The picture the camera moves over, and the framing used. ``fill``: the photo scaled so it
    covers the frame at the plan's largest zoom (never enlarged beyond that). ``surround``: the
    whole photo centred over a blurred, enlarged copy, the frame's shape."""
    zoom = max(plan.zoom)
    photo_h, photo_w = photo.shape[:2]
    cover = max(width / photo_w, height / photo_h) * zoom
    if framing == "auto":
        framing = "fill" if _faces_fit(photo, width, height) else "surround"
    if framing == "fill":
        if cover >= 1:
            return photo, framing
        size = (max(width, round(photo_w * cover)), max(height, round(photo_h * cover)))
        return cv2.resize(photo, size, interpolation=cv2.INTER_AREA), framing
    out_w, out_h = round(width * zoom), round(height * zoom)
    cover_scale = max(out_w / photo_w, out_h / photo_h)
    big = cv2.resize(photo, (round(photo_w * cover_scale), round(photo_h * cover_scale)))
    left, top = (big.shape[1] - out_w) // 2, (big.shape[0] - out_h) // 2
    canvas = cv2.GaussianBlur(big[top : top + out_h, left : left + out_w], (0, 0), out_w / 30)
    canvas = (canvas.astype(np.float32) * 0.8).astype(np.uint8)  # the photo stands out
    contain = min(out_w / photo_w, out_h / photo_h)
    size = (max(1, round(photo_w * contain)), max(1, round(photo_h * contain)))
    inner = cv2.resize(
        photo, size, interpolation=cv2.INTER_AREA if contain < 1 else cv2.INTER_CUBIC
    )
    x, y = (out_w - size[0]) // 2, (out_h - size[1]) // 2
    canvas[y : y + size[1], x : x + size[0]] = inner
    return canvas, framing


def _faces_fit(photo: Array, width: int, height: int) -> bool:
    """Whether one crop of the frame's shape holds every face (with a margin) at once."""
    photo_h, photo_w = photo.shape[:2]
    found = face_boxes(photo) if min(photo_h, photo_w) >= 64 else []
    if not found:
        return True
    boxes = np.array(found)
    span_x = boxes[:, 2].max() - boxes[:, 0].min()
    span_y = boxes[:, 3].max() - boxes[:, 1].min()
    view = min(photo_w / width, photo_h / height)  # photo pixels per frame pixel when covering
    return bool(span_x < 0.85 * width * view and span_y < 0.85 * height * view)


class _Camera:
    """Where the frame looks at time t: a centre and a scale in the picture's pixels.

    The path is planned in room units: -1 .. 1 spans the room the picture leaves around the
    view at the current zoom, so the view never leaves the picture and frame 0 of a photo of
    the frame's own shape is the whole photo (no room yet at zoom 1).
    """

    def __init__(self, picture: Array, scene: Scene, plan: Plan, width: int, height: int) -> None:
        self.plan, self.width, self.height = plan, width, height
        pic_h, pic_w = picture.shape[:2]
        self.size = np.array([pic_w, pic_h], np.float64)
        self.fill = min(pic_w / width, pic_h / height)  # picture pixels per frame pixel at zoom 1
        self.middle = (self.size - 1) / 2
        room = np.maximum(self._room(max(plan.zoom)), 1e-6)
        focus = np.clip((_focus(scene, pic_w, pic_h) - self.middle) / room, -1, 1)
        # Travel: a share of the room, never so far that a face leaves the frame.
        reach = plan.pan_reach * np.minimum(
            1, _face_slack(scene, self._view(max(plan.zoom))) / (2 * room)
        )
        step = np.array(plan.pan) * reach
        start, end = focus - step, focus + step
        overshoot = np.maximum(np.maximum(start, end) - 1, 0) - np.maximum(
            -1 - np.minimum(start, end), 0
        )
        self.start, self.end = np.clip(start - overshoot, -1, 1), np.clip(end - overshoot, -1, 1)

    def _view(self, zoom: float) -> Array:
        view: Array = np.array([self.width, self.height]) * self.fill / zoom
        return view

    def _room(self, zoom: float) -> Array:
        room: Array = np.maximum(self.size - self._view(zoom), 0) / 2
        return room

    def at(self, t: float) -> tuple[float, float, float]:
        """(scale, centre x, centre y): picture pixels per frame pixel, and the view's centre."""
        progress = ease(t / self.plan.travel_s)
        zoom = self.plan.zoom[0] + (self.plan.zoom[1] - self.plan.zoom[0]) * progress
        centre = self.middle + self._room(zoom) * (self.start + (self.end - self.start) * progress)
        return self.fill / zoom, float(centre[0]), float(centre[1])


def _focus(scene: Scene, pic_w: int, pic_h: int) -> Array:
    """What the camera centres on: the faces, else the subject, else the picture's centre."""
    if scene.face_boxes:
        boxes = np.array(scene.face_boxes)
        return np.array(
            [
                (boxes[:, 0].min() + boxes[:, 2].max()) / 2,
                boxes[:, 1].min() * 0.6 + boxes[:, 3].max() * 0.4,
            ]
        )
    if scene.subject_box is not None:
        left, top, right, bottom = scene.subject_box
        return np.array([(left + right) / 2, top + 0.45 * (bottom - top)])
    return np.array([pic_w / 2, pic_h / 2])


def _face_slack(scene: Scene, view: Array) -> Array:
    """How far the view may travel with every face staying inside it (infinite if none)."""
    if not scene.face_boxes:
        return np.array([np.inf, np.inf])
    boxes = np.array(scene.face_boxes)
    span = np.array([boxes[:, 2].max() - boxes[:, 0].min(), boxes[:, 3].max() - boxes[:, 1].min()])
    slack: Array = np.maximum(view * 0.9 - span, 0)
    return slack


class Renderer:
    """Draws frames at any time t."""

    def __init__(self, picture: Array, scene: Scene, plan: Plan, width: int, height: int) -> None:
        self.picture, self.scene, self.plan = picture, scene, plan
        self.width, self.height = width, height
        self.camera = _Camera(picture, scene, plan, width, height)
        self.work = picture.copy()  # faces are redrawn into this copy every frame
        self.faces = [FaceAnimator(picture, face, plan) for face in scene.faces]

        # The low-resolution grid: cell centres in frame pixels, as cv2.resize places them.
        self.low_w, self.low_h = -(-width // LOW_RES), -(-height // LOW_RES)
        gx = (np.arange(self.low_w, dtype=np.float32) + 0.5) * (width / self.low_w) - 0.5
        gy = (np.arange(self.low_h, dtype=np.float32) + 0.5) * (height / self.low_h) - 0.5
        self.low_x, self.low_y = np.meshgrid(gx - (width - 1) / 2, gy - (height - 1) / 2)
        self.frame_y = np.meshgrid(gx, gy)[1] / height  # 0 top .. 1 bottom
        self.frame_x = np.meshgrid(gx, gy)[0] / width
        self.full_x = np.arange(width, dtype=np.float32) - (width - 1) / 2
        self.full_y = np.arange(height, dtype=np.float32) - (height - 1) / 2

        # Full-size buffers, allocated once.
        self.map_x = np.empty((height, width), np.float32)
        self.map_y = np.empty((height, width), np.float32)
        self.sampled = np.empty((height, width, 3), np.uint8)
        self.blend = np.empty((height, width, 3), np.float32)
        self.keep = np.empty((height, width, 3), np.float32)
        self.add = np.empty((height, width, 3), np.float32)
        self.particles = Particles(plan, width, height)
        self.stars = Stars(plan, scene.maps[..., SKY], scene.grid_scale) if plan.stars else None
        self.layer = np.zeros((height, width, 3), np.uint8)

        self.subject_rows = _subject_rows(scene)
        rng = np.random.default_rng(plan.noise_seed + 2)
        grid = (scene.maps.shape[0], scene.maps.shape[1])
        self.clouds = _noise_texture(rng, grid, broad=6.0, fine=1.2)
        self.fog = _noise_texture(rng, grid, broad=10.0, fine=3.0)
        sky_colour = np.minimum(scene.sky_rgb * 0.35 + 170, 255)
        self.cloud_colour = sky_colour * (0.55 if plan.grade == "night" else 1.0)
        self.fog_colour = np.array(
            [120, 130, 150] if plan.grade == "night" else [215, 218, 222], np.float32
        )

    def render(self, t: float, out: Array) -> None:
        """Writes the frame at time t (seconds) into ``out`` (H x W x 3 uint8)."""
        scale, cx, cy = self.camera.at(t)
        for face in self.faces:
            face.render(t, self.work)
        # Where each low-res cell looks in the picture, and what is there.
        base_x = (self.low_x * scale + cx).astype(np.float32)
        base_y = (self.low_y * scale + cy).astype(np.float32)
        g = 1 / self.scene.grid_scale
        maps = cv2.remap(
            self.scene.maps,
            base_x * g - 0.5,
            base_y * g - 0.5,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        foliage = cv2.remap(
            self.scene.foliage,
            base_x * g - 0.5,
            base_y * g - 0.5,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        dx, dy = self._displacement(t, maps, foliage, scale, cy)
        # Full size: the exact camera map plus the smooth local motion.
        cv2.resize(dx, (self.width, self.height), dst=self.map_x, interpolation=cv2.INTER_LINEAR)
        cv2.resize(dy, (self.width, self.height), dst=self.map_y, interpolation=cv2.INTER_LINEAR)
        self.map_x += self.full_x[None, :] * scale + cx
        self.map_y += self.full_y[:, None] * scale + cy
        cv2.remap(
            self.work,
            self.map_x,
            self.map_y,
            cv2.INTER_LINEAR,
            dst=self.sampled,
            borderMode=cv2.BORDER_REFLECT101,
        )

        rise = 1 - math.exp(-t / 1.2)
        cv2.transform(self.sampled, grade_matrix(self.plan, rise, t), dst=self.sampled)
        keep, add = self._veil(t, maps, base_x * g, base_y * g, rise, (scale, cx, cy))
        size = (self.width, self.height)
        cv2.resize(keep, size, dst=self.keep, interpolation=cv2.INTER_LINEAR)
        cv2.resize(add, size, dst=self.add, interpolation=cv2.INTER_LINEAR)
        cv2.multiply(self.sampled, self.keep, dst=self.blend, dtype=cv2.CV_32F)
        cv2.add(self.blend, self.add, dst=self.blend)
        if self.particles.active or self.stars is not None:
            self.particles.draw(t, self.layer)
            if self.stars is not None:
                self.stars.draw(
                    t,
                    (
                        1 / scale,
                        (self.width - 1) / 2 - cx / scale,
                        (self.height - 1) / 2 - cy / scale,
                    ),
                    self.layer,
                )
            cv2.add(self.blend, self.layer, dst=self.blend, dtype=cv2.CV_32F)
        cv2.convertScaleAbs(self.blend, dst=out)  # rounds and saturates to 0..255

    def _displacement(
        self, t: float, maps: Array, foliage: Array, scale: float, cy: float
    ) -> tuple[Array, Array]:
        """Where the low-res cells take their colour from, relative to the camera alone, in
        picture pixels: parallax, the subject's breath and sway, ripples, wind."""
        plan, width, height = self.plan, self.width, self.height
        ramp = 1 - math.exp(-t / 0.5)  # local motion fades in, so frame 0 is the still photo
        near = np.maximum(maps[..., DEPTH], maps[..., SUBJECT])
        subject = maps[..., SUBJECT]
        progress = ease(t / plan.travel_s)
        # Near things travel further than far ones as the camera moves (content moves
        # against the pan): sample from the opposite side.
        shift = plan.parallax * width * (2 * near - 1) * progress
        dx = shift * plan.pan[0]
        dy = shift * 0.3 * plan.pan[1]
        # Breathing: the subject swells upward from its base; sway: its top moves sideways.
        top, bottom = self.subject_rows
        frame_rows = self.low_y + (height - 1) / 2  # frame pixels
        base = (bottom - cy) / scale + (height - 1) / 2
        rel = np.clip((base - frame_rows) / max((bottom - top) / scale, 1.0), 0, 1.5)
        breath = plan.breathe * ramp * math.sin(2 * math.pi * t / 3.6 + plan.phase)
        dy = dy + subject * breath * rel * (bottom - top) / scale
        sway = plan.sway * width * ramp * math.sin(2 * math.pi * t / 4.7 + 1.7 * plan.phase)
        dx = dx - subject * sway * rel**1.5
        # Water: waves shorter towards the horizon, travelling towards the viewer.
        water = maps[..., WATER]
        if plan.ripple and water.max() > 0.05:
            depth_rows = np.clip(self.frame_y, 0.05, 1)
            phase = 2 * math.pi * (self.frame_y / (0.012 + 0.03 * depth_rows) - 0.8 * t)
            across = 2 * math.pi * (self.frame_x * 3 + 0.13 * t)
            amp = plan.ripple * height * ramp * water * (0.4 + 0.6 * depth_rows)
            dx = dx + amp * np.sin(phase + np.sin(across))
            dy = dy + 0.5 * amp * np.cos(phase)
        # Wind: a wave of gusts through foliage, larger higher up.
        if plan.wind and foliage.max() > 0.05:
            gust = 0.65 + 0.35 * math.sin(2 * math.pi * 0.17 * t + plan.phase)
            wave = np.sin(2 * math.pi * (self.frame_x / 0.35 + self.frame_y / 0.5 - 0.7 * t))
            dx = dx + plan.wind * width * ramp * gust * foliage * wave * (1.2 - 0.5 * self.frame_y)
        return (dx * scale).astype(np.float32), (dy * scale).astype(np.float32)

    def _veil(
        self,
        t: float,
        maps: Array,
        gx: Array,
        gy: Array,
        rise: float,
        view: tuple[float, float, float],
    ) -> tuple[Array, Array]:
        """Per low-res cell: what share of the graded photo stays (3 channels), and the light
        added on top (clouds, fog, glow and rays; 3 channels, 0..255). ``view`` is the
        camera's (scale, centre x, centre y)."""
        plan = self.plan
        sky = maps[..., SKY]
        keep = np.ones(sky.shape, np.float32)
        add = np.zeros((*sky.shape, 3), np.float32)
        # Clouds drift across the photo's sky: the texture is sampled shifted and wraps.
        if plan.clouds and sky.max() > 0.01:
            drift = plan.cloud_speed * t * self.clouds.shape[1]
            near = cv2.remap(
                self.clouds, gx - drift, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
            )
            far = cv2.remap(
                self.clouds,
                gx - 0.5 * drift + 17,
                gy * 0.8,
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_WRAP,
            )
            cover = (
                plan.clouds
                * (1 - math.exp(-t / 0.8))
                * sky
                * smoothstep(0.48, 0.8, 0.65 * near + 0.35 * far)
            )
            keep -= cover
            add += cover[..., None] * self.cloud_colour
        if plan.fog:
            drift = 0.03 * t * self.fog.shape[1]
            density = cv2.remap(
                self.fog, gx - drift, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP
            )
            far = 1 - maps[..., DEPTH]
            fog = (
                plan.fog
                * rise
                * (0.35 + 0.65 * smoothstep(0.3, 0.75, density))
                * (0.45 + 0.55 * far)
            )
            keep *= 1 - fog
            add = add * (1 - fog[..., None]) + fog[..., None] * self.fog_colour
        # Light: a soft glow where the photo is brightest, and rays fanning from it.
        lx, ly = self.scene.light_xy
        scale, cx, cy = view
        sx = (lx * self.picture.shape[1] - cx) / scale / self.width + 0.5
        sy = (ly * self.picture.shape[0] - cy) / scale / self.height + 0.5
        dist2 = ((self.frame_x - sx) * self.width / self.height) ** 2 + (self.frame_y - sy) ** 2
        warm = np.array([255, 190, 110] if plan.grade == "sunset" else [255, 245, 225], np.float32)
        glow = (0.07 + 0.12 * (plan.grade == "sunset")) * rise * np.exp(-dist2 / 0.08)
        glow *= 0.85 + 0.15 * math.sin(2 * math.pi * 0.15 * t + plan.phase)
        if plan.grade == "night":
            glow *= 0.3
        if plan.rays:
            angle = np.arctan2(self.frame_y - sy, (self.frame_x - sx) * self.width / self.height)
            fan = 0.5 + 0.5 * np.sin(9 * angle + 0.25 * t + plan.phase) * np.sin(
                5 * angle - 0.17 * t
            )
            strength = plan.rays * rise * 0.09
            rays = strength * smoothstep(0.45, 1.0, fan) * np.exp(-np.sqrt(dist2) / 0.7)
            glow = glow + rays
        add += glow[..., None] * warm
        if plan.grade == "sunset":
            # The sky near the horizon turns orange.
            band = sky * smoothstep(0.0, 1.0, self.frame_y / max(self.scene.horizon, 0.2))
            add += (0.25 * rise * band)[..., None] * np.array([255, 120, 40], np.float32)
            keep *= 1 - 0.2 * rise * band
        return np.repeat(keep[..., None], 3, axis=2), add


def _subject_rows(scene: Scene) -> tuple[float, float]:
    """The subject's top and bottom row in the picture (the whole height if none)."""
    if scene.subject_box is None:
        return 0.0, scene.maps.shape[0] * scene.grid_scale
    return scene.subject_box[1], scene.subject_box[3]


def _noise_texture(
    rng: np.random.Generator, shape: tuple[int, int], broad: float, fine: float
) -> Array:
    """Soft 0..1 noise on the analysis grid (two scales), for clouds and fog."""
    noise = rng.standard_normal((2, *shape)).astype(np.float32)
    a, b = soften(noise[0], broad), soften(noise[1], fine)
    field = 0.75 * a / max(float(a.std()), 1e-6) + 0.25 * b / max(float(b.std()), 1e-6)
    return (0.5 + 0.22 * field).astype(np.float32)


def prepare(
    image: Array, prompt: str, seed: int, width: int, height: int, framing: str = "auto"
) -> Renderer:
    """Everything done once per video: the plan, the framing, the photo's analysis."""
    if framing not in FRAMINGS:
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    plan = plan_motion(prompt, seed)
    picture, _ = frame_photo(np.ascontiguousarray(image), width, height, plan, framing)
    scene = analyse(picture, wants_water="water" in plan.effects)
    return Renderer(picture, scene, plan, width, height)


def animate(
    image: Array,
    prompt: str,
    seed: int,
    num_frames: int,
    fps: int,
    width: int = 0,
    height: int = 0,
    framing: str = "auto",
) -> Array:
    """Frames [num_frames, height, width, 3] uint8 of the photo (H x W x 3 uint8) brought to
    life; a size of 0 is the photo's own."""
    check_inputs(image, num_frames, fps, width, height)
    width, height = width or image.shape[1], height or image.shape[0]
    renderer = prepare(image, prompt, seed, width, height, framing)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    for i in range(num_frames):
        renderer.render(i / fps, frames[i])
    return frames
