"""How the prompt steers the animator: its vocabulary and the motion plan it yields.

The seed picks pleasant values, the prompt's words steer them: "zoom", "pan left", "clouds",
"sunset", "waves", "windy", "calm" and the rest below. Words are matched whole, lower-cased.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

# Prompt vocabulary. Words are matched whole, lower-cased.
_ZOOM_IN = {"zoom", "zooming", "closer", "close", "closeup", "approach", "push", "dolly"}
_ZOOM_OUT = re.compile(r"\b(zoom(ing)? out|pull(ing)? (back|out)|wider|widen(ing)?)\b")
_CLOUDS = {"cloud", "clouds", "cloudy", "sky", "skies", "storm", "stormy", "overcast", "mist"}
_WARM = {"sunset", "sunrise", "golden", "warm", "dawn", "dusk", "sun", "sunny", "fire", "autumn"}
_COOL = {"night", "moon", "moonlight", "moonlit", "cold", "cool", "winter", "snow", "ice", "blue"}
_WATER = {"water", "waves", "wave", "sea", "ocean", "lake", "river", "pond", "ripple", "ripples"}
_WIND = {"wind", "windy", "breeze", "breezy", "sway", "swaying", "blowing", "gust", "gusty"}
_CALM = {"calm", "gentle", "gently", "slow", "slowly", "still", "peaceful", "serene", "quiet"}
_LIVELY = {"fast", "dramatic", "dynamic", "epic", "energetic", "lively"}
_LIGHT = {"light", "glow", "glowing", "shine", "shining", "sparkle", "shimmer", "rays", "beam"}


@dataclass(frozen=True)
class Motion:
    """What moves and how much. Sizes are fractions of the image, times are in seconds."""

    zoom: float  # extra scale the camera reaches (0.12 = 12 % closer)
    zoom_out: bool  # start that close and pull back to the photo instead
    settle_s: float  # camera time constant: moves fastest at first, then settles
    focus: tuple[float, float]  # (x, y) the zoom centres on
    pan: tuple[float, float]  # camera travel per axis, -1..1 of what the zoom margin allows
    parallax: float  # 0: flat; 0.6: near layers move 4x as much as far ones
    sky_drift: float  # how far the sky slides sideways (sign: direction)
    clouds: float  # opacity of the procedural cloud layer over the sky
    cloud_speed: float  # per second (sign: direction)
    warmth: float  # +1 warm (sunset), -1 cool (night), 0 neutral
    hue_wander: float  # amplitude of the slow hue drift of the light
    hue_phase: float
    glow: float  # strength of the soft light blob and the light sweep
    sweep_speed: float  # per second (sign: direction)
    ripple: float  # water ripple amplitude, fraction of the height
    sway: float  # wind sway amplitude, fraction of the width
    noise_seed: int  # for the cloud texture


def plan_motion(prompt: str, seed: int) -> Motion:
    """Motion parameters: the seed picks pleasant values, the prompt's words steer them."""
    # Every random number is drawn first, in a fixed order, so words never shift the sequence.
    rng = np.random.default_rng(seed % 2**64)
    wind_direction = float(rng.choice([-1.0, 1.0]))
    motion = Motion(
        zoom=rng.uniform(0.08, 0.15),
        zoom_out=False,
        settle_s=rng.uniform(4.0, 7.0),
        focus=(rng.uniform(0.38, 0.62), rng.uniform(0.38, 0.58)),
        pan=(rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)),
        parallax=rng.uniform(0.3, 0.5),
        sky_drift=wind_direction * rng.uniform(0.02, 0.035),
        clouds=0.3,
        cloud_speed=wind_direction * rng.uniform(0.015, 0.03),
        warmth=0.0,
        hue_wander=0.03,
        hue_phase=rng.uniform(0.0, 2 * math.pi),
        glow=rng.uniform(0.08, 0.12),
        sweep_speed=float(rng.choice([-1.0, 1.0])) * rng.uniform(0.05, 0.09),
        ripple=0.0,
        sway=0.0,
        noise_seed=int(rng.integers(2**63)),
    )
    text = prompt.lower()
    words = set(re.findall(r"[a-z]+", text))
    zoom_out = bool(_ZOOM_OUT.search(text))
    if words & _ZOOM_IN or zoom_out:
        motion = replace(motion, zoom=motion.zoom * 1.6, pan=(0.0, 0.0), zoom_out=zoom_out)
    side = ("right" in words) - ("left" in words)
    if side:
        # Frame 0 is the whole photo, so a pan needs the margin a zoom creates. Zooming about a
        # point near the edge the camera turns to moves all content the same way, like a pan.
        motion = replace(
            motion,
            zoom=max(motion.zoom, 0.12),
            pan=(0.9 * side, 0.0),
            focus=(0.5 + 0.4 * side, motion.focus[1]),
        )
    if words & _CLOUDS:
        motion = replace(motion, clouds=0.6, sky_drift=motion.sky_drift * 1.8)
    if words & _WARM and not words & _COOL:
        motion = replace(motion, warmth=1.0)
    elif words & _COOL and not words & _WARM:
        motion = replace(motion, warmth=-1.0)
    if words & _WATER:
        motion = replace(motion, ripple=0.004)
    if words & _WIND:
        motion = replace(
            motion,
            sway=0.004,
            cloud_speed=motion.cloud_speed * 1.8,
            sky_drift=motion.sky_drift * 1.5,
        )
    if words & _LIGHT:
        motion = replace(motion, glow=motion.glow * 1.8)
    if words & _CALM:
        motion = _scaled(motion, 0.55)
    elif words & _LIVELY:
        motion = _scaled(motion, 1.4)
    return motion


def _scaled(motion: Motion, energy: float) -> Motion:
    """Every amplitude and speed times ``energy``; zoom stays within what still looks natural."""
    return replace(
        motion,
        zoom=min(motion.zoom * energy, 0.25),
        sky_drift=motion.sky_drift * energy,
        cloud_speed=motion.cloud_speed * energy,
        glow=motion.glow * energy,
        sweep_speed=motion.sweep_speed * energy,
        ripple=motion.ripple * energy,
        sway=motion.sway * energy,
    )
