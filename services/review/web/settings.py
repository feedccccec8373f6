"""The review web app's settings (``ALIVE_REVIEW_WEB__<FIELD>``); the shared ones (Kafka, blob
store) are ``ALIVE_<FIELD>`` as for every service."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from alive.reasons import SEVERE_REPORT_REASONS

ENV_PREFIX = "ALIVE_REVIEW_WEB__"


class ReviewWebSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore"
    )

    host: str = "127.0.0.1"
    port: int = 8090
    # Reviewer accounts: name -> argon2 hash of the password (`python -m
    # services.review.web.hash_password`). Behind an SSO / OIDC proxy see docs/security.md.
    reviewers: dict[str, str] = Field(default_factory=dict)
    # Take the reviewer from this request header instead of a password (set only when an
    # authenticating proxy in front of the app sets it and strips it from clients).
    trusted_user_header: str | None = None
    # A session ends this long after sign-in, whatever is done with it.
    session_ttl_s: int = 8 * 3600
    # Session cookies only over HTTPS (on in production; the embedded stack is plain HTTP on
    # loopback).
    secure_cookies: bool = True
    # How long a reviewer holds an item they opened before another may take it.
    claim_timeout_s: int = 300
    # The Ed25519 private key (PEM) decisions are signed with; review holds its public key.
    decision_key_path: Path = Path(".alive/keys/review-web-decisions.pem")
    # Reports of this many different users send a published video to the queue.
    report_threshold: int = 3
    # The moderation policy reviewers apply now (policy.yaml's version). A decision on a
    # reported video is final for the version it was made under; once this changes, reports
    # made after the decision send the video to a person again. Empty: final for good.
    policy_version: str = ""
    # One report with any of these reasons takes the video off Stories at once.
    severe_report_reasons: list[str] = Field(
        default_factory=lambda: sorted(str(r) for r in SEVERE_REPORT_REASONS)
    )
