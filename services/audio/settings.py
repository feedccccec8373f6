"""Audio settings (``ALIVE_AUDIO__<FIELD>``)."""

from __future__ import annotations

from typing import ClassVar

from alive.limits import JobLimits
from alive.memory import mib_of
from alive.pipeline import AUDIO
from alive.settings import StageSettings, stage_settings_config

# A photo's peak per pixel while the scene is read from it (stage.py): its PNG bytes and the
# full-size decode before it is reduced. Measured with the soundtrack of the longest video:
# 234 MiB for 40 megapixels (an 81 MiB PNG), benchmarks/stage_memory.py; 308 MiB budgeted.
PHOTO_BYTES_PER_PIXEL = 6
# The soundtrack's bytes per sample and channel (float32 stereo), in copies held at once: the
# layers mixed, the track, and the encoder's conversion of it.
SAMPLE_BYTES = 4
CHANNELS = 2
SOUNDTRACK_COPIES = 4


class AudioSettings(StageSettings):
    model_config = stage_settings_config(AUDIO)
    BASE_MEMORY_MIB: ClassVar[int] = 384
    # Beyond the photo and the soundtrack: the mux (the video is streamed, file to file).
    JOB_MEMORY_MIB: ClassVar[int] = 64

    # Of the AAC soundtrack, in Hz.
    sample_rate: int = 48_000

    def job_memory_mib(self, limits: JobLimits) -> int:
        """The photo at the pixel limit, and the soundtrack of the longest video."""
        samples = self.sample_rate * limits.output.max_duration_ms // 1000
        soundtrack = samples * SAMPLE_BYTES * CHANNELS * SOUNDTRACK_COPIES
        photo = limits.max_photo_pixels * PHOTO_BYTES_PER_PIXEL
        return mib_of(photo + soundtrack) + self.JOB_MEMORY_MIB
