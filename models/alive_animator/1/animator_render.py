"""Renders frames: a virtual camera (zoom or pan with parallax between near and far), a
drifting sky with procedural clouds, water ripple, wind sway and slowly shifting light.

``animate`` is the one entry point; ``check_inputs`` is the one place its inputs are checked
(animate runs it, and so does request decoding, to refuse a whole batch before rendering any of
it). Motion is a function of time in seconds, so fps only changes how it is sampled; the same
(image, prompt, seed, num_frames, fps) gives bit-identical frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from animator_scene import Array, Scene, analyse, blur, smoothstep
from animator_vocabulary import Motion, plan_motion

MAX_FRAMES = 600
MAX_FPS = 60
MIN_SIDE = 16
MAX_SIDE = 4096

# Tints of the light per channel (R, G, B) that "warm" and "cool" grade towards.
_WARM_TINT = np.array([0.15, 0.04, -0.16], dtype=np.float32)
_COOL_TINT = np.array([-0.14, -0.06, 0.06], dtype=np.float32)  # bluer and dimmer


class InvalidInput(ValueError):
    """A request the model cannot animate; the message says which input and why."""


def check_inputs(image: Array, num_frames: int, fps: int) -> None:
    """Raises InvalidInput unless ``animate`` can take this photo at this length and rate."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InvalidInput(f"IMAGE must be uint8 H x W x 3, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE or max(height, width) > MAX_SIDE:
        raise InvalidInput(
            f"IMAGE sides must be {MIN_SIDE}..{MAX_SIDE} pixels, got {width}x{height}"
        )
    if not 1 <= num_frames <= MAX_FRAMES:
        raise InvalidInput(f"NUM_FRAMES must be 1..{MAX_FRAMES}, got {num_frames}")
    if not 1 <= fps <= MAX_FPS:
        raise InvalidInput(f"FPS must be 1..{MAX_FPS}, got {fps}")


def _pack(image: Array) -> Array:
    """The photo as one uint64 per pixel, R, G, B in 24-bit lanes, padded by one row and column.

    Bilinear sampling then needs four gathers instead of twelve, and the weighted sums of all
    three channels happen in one integer multiply: a lane holds at most 255 * 16 * 16 < 2**16,
    so lanes never spill into each other, and each result's integer part is one whole byte.
    """
    padded = np.pad(image, ((0, 1), (0, 1), (0, 0)), mode="edge").astype(np.uint64)
    lanes = padded[..., 0] | (padded[..., 1] << np.uint64(24)) | (padded[..., 2] << np.uint64(48))
    packed: Array = lanes.ravel()
    return packed


def _light_colour(warmth: float) -> Array:
    """Colour of the glow and sweep: golden when warm, moonlight when cool, else soft daylight."""
    if warmth > 0:
        return np.array([1.0, 0.82, 0.55], np.float32)
    if warmth < 0:
        return np.array([0.7, 0.82, 1.0], np.float32)
    return np.array([1.0, 0.95, 0.85], np.float32)


# Adds 0.5 to each lane's 8.8 fixed-point result, so truncation rounds.
_ROUND = np.uint64(128 | 128 << 24 | 128 << 48)


@dataclass(frozen=True)
class _FrameState:
    """What one frame needs that is not per pixel; computed once, read by every band."""

    zoom_scale: float  # per pixel, k = 1 / (zoom_base + zoom_scale * depth) is the inverse zoom
    zoom_base: float
    shift_depth: tuple[float, float]  # camera translation, the part that grows with depth
    shift_base: tuple[float, float]
    sky_shift: float
    ripple: tuple[Array, Array, Array] | None  # per water row: cos, sin, bob
    sway: tuple[Array, Array] | None  # per row: cos and sin amplitudes
    glow_x: Array
    glow_y: Array
    sweep: Array  # 1-D profile every row reads at its own offset
    gains: Array  # per channel
    tinted: Array  # light colour times gains, per channel
    clouds: Array | None  # density on the cloud texture's rows, frame columns
    cloud_colour: Array


class _Renderer:
    """Draws frames at any time t.

    Pixels are processed in bands of rows so the dozen work buffers stay in the CPU cache;
    buffers are reused because allocating and faulting in large arrays dominates numpy time.
    """

    def __init__(self, image: Array, scene: Scene, motion: Motion) -> None:
        self.height, self.width = height, width = image.shape[:2]
        self.scene, self.motion = scene, motion
        self.packed = _pack(image)
        self.xs = np.arange(width, dtype=np.float32)
        self.ys = np.arange(height, dtype=np.float32)
        self.focus = (motion.focus[0] * width, motion.focus[1] * height)

        self.band = max(1, min(height, 65536 // width))
        plane, pixels = (self.band, width), self.band * width
        self.sx, self.sy = np.empty(plane, np.float32), np.empty(plane, np.float32)
        self.tmp, self.tmp2 = np.empty(plane, np.float32), np.empty(plane, np.float32)
        self.fixed, self.index = np.empty(pixels, np.intp), np.empty(pixels, np.intp)
        self.weights = [np.empty(pixels, np.uint64) for _ in range(4)]
        self.acc = [np.empty(pixels, np.uint64) for _ in range(3)]
        # Colour is planar (3 x rows x W): numpy is slow on a trailing axis of length 3.
        self.rgb = np.empty((3, *plane), np.float32)
        self.rgb8 = np.empty((3, *plane), np.uint8)

        self._prepare_ripple()
        self._prepare_sway()
        self._prepare_sweep()
        self._prepare_clouds()

    def render(self, t: float, out: Array) -> None:
        """Writes the frame at time t (seconds) into ``out`` (H x W x 3 uint8)."""
        state = self._frame_state(t)
        for top in range(0, self.height, self.band):
            rows = slice(top, min(top + self.band, self.height))
            self._coordinates(state, rows)
            self._sample(rows)
            self._light(state, rows)
            self._clouds(state, rows)
            self._store(rows, out)

    # Per frame ----------------------------------------------------------------------------

    def _frame_state(self, t: float) -> _FrameState:
        m = self.motion
        progress = math.tanh(t / m.settle_s)
        e = m.zoom * ((1 - progress) if m.zoom_out else progress)
        par = m.parallax
        # The zoom's excess and the translation are weighted 1 + par * (2 depth - 1) per
        # pixel: near layers grow and move more than far ones, smoothly, so nothing tears.
        margin = 1 - 1 / (1 + e)  # pans stay within what the zoom crops, never off the photo
        fx, fy = self.focus
        ox = m.pan[0] * 0.6 * margin * (self.width - fx if m.pan[0] > 0 else fx)
        oy = m.pan[1] * 0.6 * margin * (self.height - fy if m.pan[1] > 0 else fy)
        ease = 1 - math.exp(-t / 0.5)  # local motions fade in, so frame 0 is the photo
        rise = math.tanh(t / 3.0)  # and so does the light

        ripple = None
        if m.ripple:
            amp = self.ripple_amp * (m.ripple * self.height * ease)
            phase = self.ripple_phase - 2 * math.pi * 0.5 * t
            bob = 0.5 * amp * np.sin(1.3 * self.ripple_phase - 3.5 * t)
            ripple = (amp * np.cos(phase), amp * np.sin(phase), bob)
        sway = None
        if m.sway:
            amp_sway = m.sway * self.width * ease * (0.75 + 0.25 * math.sin(2 * math.pi * 0.21 * t))
            phase = 2 * math.pi * (0.4 * t + self.ys / (0.7 * self.height))
            sway = (amp_sway * np.cos(phase), amp_sway * np.sin(phase))

        lx, ly = self.scene.light_xy
        radius = 0.35 * max(self.width, self.height)
        cx = (lx + 0.04 * math.sin(2 * math.pi * t / 17.0 + m.hue_phase)) * self.width
        pulse = m.glow * rise * (0.85 + 0.15 * math.sin(2 * math.pi * 0.15 * t))
        span = self.sweep_x.size
        centre = ((0.5 + m.sweep_speed * t) % 1.6 - 0.3) * span  # wraps while off-frame
        sweep = 0.6 * m.glow * rise * np.exp(-(((self.sweep_x - centre) / (0.12 * span)) ** 2))
        gains = self._gains(t, rise)
        return _FrameState(
            zoom_scale=2 * e * par,
            zoom_base=1 + e * (1 - par),
            shift_depth=(2 * par * ox, 2 * par * oy),
            shift_base=(ox * (1 - par), oy * (1 - par)),
            sky_shift=m.sky_drift * self.width * progress,
            ripple=ripple,
            sway=sway,
            glow_x=pulse * np.exp(-(((self.xs - cx) / radius) ** 2)),
            glow_y=np.exp(-(((self.ys - ly * self.height) / radius) ** 2)),
            sweep=sweep.astype(np.float32),
            gains=gains,
            tinted=_light_colour(m.warmth) * gains,
            clouds=self._cloud_density(t),
            cloud_colour=np.minimum(self.scene.sky_rgb * 0.4 + 160, 255) * gains,
        )

    def _gains(self, t: float, rise: float) -> Array:
        """Per-channel colour grade: warm or cool, plus a slow wander of the hue."""
        m = self.motion
        tint = _WARM_TINT if m.warmth > 0 else _COOL_TINT
        theta = m.hue_phase + 2 * math.pi * t / 20.0
        wander = np.cos(theta - np.array([0.0, 2.0, 4.0], np.float32) * math.pi / 3)
        breathe = 0.015 * math.sin(2 * math.pi * 0.11 * t + m.hue_phase)
        gains: Array = 1 + rise * (abs(m.warmth) * tint + m.hue_wander * wander + breathe)
        return gains.astype(np.float32)

    def _cloud_density(self, t: float) -> Array | None:
        """Cloud cover on the texture's rows: two layers drifting at two speeds, so they morph."""
        m = self.motion
        strength = m.clouds * (1 - math.exp(-t / 0.8))
        if not self.scene.sky_rows or strength <= 0:
            return None
        shift = m.cloud_speed * self.width * t
        near = self._cloud_columns_at(shift)
        far = self._cloud_columns_at(0.55 * shift + self.width)
        return (strength * smoothstep(0.5, 0.85, 0.65 * near + 0.35 * far)).astype(np.float32)

    def _cloud_columns_at(self, shift_px: float) -> Array:
        """The texture's rows resampled to frame columns, shifted sideways (wrapping)."""
        pos = ((self.xs - shift_px) / self.cloud_cell) % self.cloud_columns
        lo = np.floor(pos).astype(np.intp)
        frac = (pos - lo).astype(np.float32)
        hi = (lo + 1) % self.cloud_columns
        row: Array = self.cloud_texture[:, lo] * (1 - frac) + self.cloud_texture[:, hi] * frac
        return row

    # Per band of rows ---------------------------------------------------------------------

    def _coordinates(self, state: _FrameState, rows: slice) -> None:
        """Source position of every pixel: camera, parallax, sky drift, ripple, sway."""
        n = rows.stop - rows.start
        sx, sy, tmp = self.sx[:n], self.sy[:n], self.tmp[:n]
        depth = self.scene.depth[rows]
        np.multiply(depth, state.zoom_scale, out=tmp)
        tmp += state.zoom_base
        np.reciprocal(tmp, out=tmp)
        # Displacements, not positions: at t = 0 every one is exactly 0, so frame 0 is the photo.
        tmp -= 1
        fx, fy = self.focus
        np.multiply((self.xs - fx)[None, :], tmp, out=sx)
        np.multiply((self.ys[rows] - fy)[:, None], tmp, out=sy)
        sx += self.xs[None, :]
        sy += self.ys[rows, None]
        for target, shift_depth, shift_base in zip(
            (sx, sy), state.shift_depth, state.shift_base, strict=True
        ):
            np.multiply(depth, shift_depth, out=tmp)
            target += tmp
            target += shift_base

        sky = slice(rows.start, min(rows.stop, self.scene.sky_rows))
        if sky.stop > sky.start:
            part = tmp[: sky.stop - sky.start]
            np.multiply(self.scene.sky[sky], state.sky_shift, out=part)
            sx[: sky.stop - sky.start] += part
        water = slice(max(rows.start, self.water_from), rows.stop)
        if state.ripple is not None and water.stop > water.start:
            local = slice(water.start - rows.start, n)
            own = slice(water.start - self.water_from, water.stop - self.water_from)
            cos_amp, sin_amp, bob = (a[own] for a in state.ripple)
            self._wave(sx[local], cos_amp, sin_amp, self.ripple_sin_x, self.ripple_cos_x)
            sy[local] += bob[:, None]
        if state.sway is not None:
            wave = self.tmp2[:n]
            wave.fill(0)
            self._wave(
                wave, state.sway[0][rows], state.sway[1][rows], self.sway_sin_x, self.sway_cos_x
            )
            wave *= self.scene.texture[rows]
            sx += wave

    def _wave(
        self,
        target: Array,
        cos_amp: Array,
        sin_amp: Array,
        sin_x: Array,
        cos_x: Array,
    ) -> None:
        """target += amp(y) * sin(kx * x + phase(y)), as two outer products (no full-size sin)."""
        out = self.tmp[: target.shape[0]]
        np.multiply(cos_amp[:, None], sin_x[None, :], out=out)
        target += out
        np.multiply(sin_amp[:, None], cos_x[None, :], out=out)
        target += out

    def _sample(self, rows: slice) -> None:
        """Bilinear sampling of the photo at (sx, sy) into ``rgb``, in 1/16-pixel fixed point."""
        n = rows.stop - rows.start
        pixels = n * self.width
        sx, sy = self.sx[:n], self.sy[:n]
        fixed, index = self.fixed[:pixels], self.index[:pixels]
        wx, wx_rest, wy, wy_rest = (w[:pixels] for w in self.weights)
        top, bottom, scratch = (a[:pixels] for a in self.acc)

        np.clip(sx, 0, self.width - 1, out=sx)
        np.clip(sy, 0, self.height - 1, out=sy)
        sx *= 16
        np.copyto(fixed, sx.reshape(-1), casting="unsafe")
        np.bitwise_and(fixed, 15, out=wx, casting="unsafe")
        np.right_shift(fixed, 4, out=index)
        sy *= 16
        np.copyto(fixed, sy.reshape(-1), casting="unsafe")
        np.bitwise_and(fixed, 15, out=wy, casting="unsafe")
        np.right_shift(fixed, 4, out=fixed)
        fixed *= self.width + 1
        index += fixed
        np.subtract(16, wx, out=wx_rest)
        np.subtract(16, wy, out=wy_rest)

        # mode="clip" skips the buffered copy numpy makes for out= with the default mode.
        np.take(self.packed, index, out=top, mode="clip")
        top *= wx_rest
        index += 1
        np.take(self.packed, index, out=scratch, mode="clip")
        scratch *= wx
        top += scratch
        index += self.width + 1
        np.take(self.packed, index, out=bottom, mode="clip")
        bottom *= wx
        index -= 1
        np.take(self.packed, index, out=scratch, mode="clip")
        scratch *= wx_rest
        bottom += scratch
        top *= wy_rest
        bottom *= wy
        top += bottom
        top += _ROUND
        # Little-endian: lane c's integer part is byte 3c + 1 of each uint64.
        lane_bytes = top.view(np.uint8).reshape(-1, 8)
        for c in range(3):
            np.copyto(self.rgb[c, :n].reshape(-1), lane_bytes[:, 3 * c + 1])

    def _light(self, state: _FrameState, rows: slice) -> None:
        """Grades ``rgb`` and brightens it with the drifting glow and the travelling sweep."""
        n = rows.stop - rows.start
        light, factor = self.tmp[:n], self.tmp2[:n]
        np.multiply(state.glow_y[rows, None], state.glow_x[None, :], out=light)
        windows = np.lib.stride_tricks.sliding_window_view(state.sweep, self.width)
        light += windows[self.sweep_offsets[rows]]
        for c in range(3):
            np.multiply(light, state.tinted[c], out=factor)
            factor += state.gains[c]
            self.rgb[c, :n] *= factor

    def _clouds(self, state: _FrameState, rows: slice) -> None:
        """Blends the drifting clouds into the sky."""
        sky = slice(rows.start, min(rows.stop, self.scene.sky_rows))
        if state.clouds is None or sky.stop <= sky.start:
            return
        n = sky.stop - sky.start
        fy = self.cloud_fy[sky]
        alpha = self.tmp[:n]
        np.multiply(state.clouds[self.cloud_row0[sky]], 1 - fy, out=alpha)
        alpha += state.clouds[self.cloud_row1[sky]] * fy
        alpha *= self.scene.sky[sky]
        for c in range(3):
            part = self.rgb[c, :n]
            part += alpha * (float(state.cloud_colour[c]) - part)

    def _store(self, rows: slice, out: Array) -> None:
        n = rows.stop - rows.start
        rgb, rgb8 = self.rgb[:, :n], self.rgb8[:, :n]
        rgb += 0.5  # everything above is non-negative, so only the top needs clipping
        np.minimum(rgb, 255, out=rgb)
        np.copyto(rgb8, rgb, casting="unsafe")
        for c in range(3):
            out[rows, :, c] = rgb8[c]

    # Set-up -------------------------------------------------------------------------------

    def _prepare_ripple(self) -> None:
        """Rows below the waterline; amplitude and phase per row, with perspective."""
        start = max(self.scene.horizon, 0.45)
        self.water_from = min(int(start * self.height), self.height)
        v = (self.ys[self.water_from :] / self.height - start) / max(1 - start, 1e-3)
        self.ripple_amp = (smoothstep(0.0, 0.25, v) * (0.3 + 0.7 * v)).astype(np.float32)
        # Waves are shorter far away (near the waterline): integrate 1 / wavelength over rows.
        wavelength = self.height * (0.015 + 0.05 * v)
        self.ripple_phase = (2 * math.pi * np.cumsum(1 / wavelength)).astype(np.float32)
        kx = 2 * math.pi / (0.3 * self.width)
        self.ripple_sin_x, self.ripple_cos_x = np.sin(kx * self.xs), np.cos(kx * self.xs)

    def _prepare_sway(self) -> None:
        kx = 2 * math.pi / (0.8 * self.width)
        self.sway_sin_x, self.sway_cos_x = np.sin(kx * self.xs), np.cos(kx * self.xs)

    def _prepare_sweep(self) -> None:
        """Row offsets into the sweep's 1-D profile: the band leans like low sunlight."""
        self.sweep_offsets = np.round(self.ys[::-1] * 0.35).astype(np.intp)
        span = self.width + int(self.sweep_offsets.max())
        self.sweep_x = np.arange(span, dtype=np.float32)

    def _prepare_clouds(self) -> None:
        """A soft noise texture, tileable sideways, that drifts over the sky."""
        rows = self.scene.sky_rows
        self.cloud_columns = 64  # the texture spans two frame widths before repeating
        self.cloud_cell = 2 * self.width / self.cloud_columns
        cell_h = 0.6 * self.cloud_cell  # flatter than wide, like clouds seen from below
        texture_rows = math.ceil(rows / cell_h) + 2
        rng = np.random.default_rng(self.motion.noise_seed)
        noise = rng.standard_normal((2, texture_rows, self.cloud_columns))
        broad, fine = blur(noise[0], 6, wrap_x=True), blur(noise[1], 1, wrap_x=True)
        field = 0.75 * broad / max(float(broad.std()), 1e-6) + 0.25 * fine / max(
            float(fine.std()), 1e-6
        )
        self.cloud_texture = (0.5 + 0.22 * field).astype(np.float32)
        pos = np.clip(self.ys[:rows] / cell_h, 0, texture_rows - 1)
        self.cloud_row0 = np.floor(pos).astype(np.intp)
        self.cloud_row1 = np.minimum(self.cloud_row0 + 1, texture_rows - 1)
        self.cloud_fy = (pos - self.cloud_row0).astype(np.float32)[:, None]


def animate(image: Array, prompt: str, seed: int, num_frames: int, fps: int) -> Array:
    """Frames [num_frames, H, W, 3] uint8 of the photo (H x W x 3 uint8) brought to life."""
    check_inputs(image, num_frames, fps)
    image = np.ascontiguousarray(image)
    renderer = _Renderer(image, analyse(image), plan_motion(prompt, seed))
    frames = np.empty((num_frames, *image.shape), np.uint8)
    for i in range(num_frames):
        renderer.render(i / fps, frames[i])
    return frames
