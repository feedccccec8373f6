"""Review settings (``ALIVE_REVIEW__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path

from alive.pipeline import REVIEW
from alive.provenance import DEV_TRUST_ANCHOR
from alive.settings import StageSettings, stage_settings_config


class ReviewSettings(StageSettings):
    model_config = stage_settings_config(REVIEW)

    # The root certificate a published video must verify against (the provenance
    # service's trust anchor).
    trust_anchor_path: Path = DEV_TRUST_ANCHOR
