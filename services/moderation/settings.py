"""Settings of the three moderation checkpoints (one settings object; each reads its part)."""

from __future__ import annotations

from pathlib import Path

from alive.settings import ServiceSettings

DEFAULT_TERMS = Path(__file__).with_name("prompt_terms.json")


class ModerationSettings(ServiceSettings):
    # Prompt checkpoint: the term list per policy category.
    prompt_terms_path: Path = DEFAULT_TERMS
    # Photo checkpoint: a photo whose grey levels vary less than this is blank.
    blank_photo_stddev: float = 4.0
    min_photo_side: int = 64
    # Video checkpoint: how far the soundtrack's length may be from the video's.
    audio_duration_tolerance_s: float = 0.1
