"""Review settings (``ALIVE_REVIEW__<FIELD>``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from alive.pipeline import REVIEW
from alive.provenance import DEV_TRUST_ANCHOR
from alive.retention import RetentionSettings
from alive.settings import StageSettings, stage_settings_config


class ReviewSettings(StageSettings):
    model_config = stage_settings_config(REVIEW)
    BASE_MEMORY_MIB: ClassVar[int] = 256
    JOB_MEMORY_MIB: ClassVar[int] = 64

    # The root certificate a published video must verify against (the provenance
    # service's trust anchor).
    trust_anchor_path: Path = DEV_TRUST_ANCHOR
    # Publish rate limit per creator: at most this many videos go live in any window of
    # rate_window_s seconds; more are vetoed (REVIEW_RATE_LIMITED).
    max_publishes_per_creator: int = 20
    rate_window_s: int = 3600
    # The share of clean jobs (no checkpoint marked them) that also wait for a person, drawn
    # per job id (a redelivered request draws the same). 0 turns sampling off.
    human_sample_rate: float = Field(default=0.02, ge=0.0, le=1.0)
    # The review web app's decision-signing public keys (PEM; several during a rotation).
    # Without one, no human decision is acted on and held jobs wait.
    decision_public_key_paths: list[Path] = Field(default_factory=list)
    # The retention sweeper runs in the review service (alive/retention.py): how long a
    # job's photo, intermediate and unpublished videos are kept (ALIVE_REVIEW__RETENTION__*).
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
