"""The bounds on what a job may be: its photo and the video it asks for.

Ingest refuses a submission outside them; every stage's memory budget (alive/memory.py)
follows from them, so they live here, read by every service from ``ALIVE_LIMITS__<FIELD>``
(``ServiceSettings.limits``): raising a bound raises every budget it drives, and a service
whose budget then no longer fits refuses to start.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

RGB_BYTES = 3  # one decoded pixel
# An encoded video's bytes per pixel of each frame, at most. H.264 at the encoder's crf 23 is
# far below it (measured: 0.004 for the largest output of scrolling texture, docs/scaling.md);
# the generator refuses a larger MP4 (OUTPUT_TOO_LARGE), so a stage that holds a video holds
# at most ``max_video_bytes`` of it.
MAX_VIDEO_BYTES_PER_PIXEL = 0.1


class OutputLimits(BaseModel):
    """What a request may ask for, and what it gets when it asks for nothing."""

    default_width: int = 576  # 9:16 portrait for a phone Story; a native size of I2V models
    default_height: int = 1024
    default_fps: int = 24
    default_duration_ms: int = 4000
    min_side: int = 64
    max_width: int = 1080
    max_height: int = 1920
    min_fps: int = 8
    max_fps: int = 30
    min_duration_ms: int = 500
    max_duration_ms: int = 10_000

    @property
    def max_frames(self) -> int:
        """Frames of the longest video at the highest rate (alive/jobs.py frame_count)."""
        return max(1, round(self.max_duration_ms * self.max_fps / 1000))

    @property
    def max_frame_bytes(self) -> int:
        """One decoded RGB frame of the largest size."""
        return self.max_width * self.max_height * RGB_BYTES

    @property
    def max_raw_video_bytes(self) -> int:
        """Every decoded frame of the largest video: 1080x1920 x 300 frames is 1.87 GB."""
        return self.max_frame_bytes * self.max_frames

    @property
    def max_video_bytes(self) -> int:
        """The largest MP4 a stage may be handed: 62 MB at the default bounds."""
        pixels = self.max_width * self.max_height * self.max_frames
        return math.ceil(pixels * MAX_VIDEO_BYTES_PER_PIXEL)


class JobLimits(BaseModel):
    # A photo's decoded size bounds what each stage that opens it holds.
    max_photo_pixels: int = Field(default=40_000_000, ge=1)
    output: OutputLimits = Field(default_factory=OutputLimits)
