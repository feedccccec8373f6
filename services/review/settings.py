"""Review settings."""

from __future__ import annotations

from pathlib import Path

from alive.settings import ServiceSettings


class ReviewSettings(ServiceSettings):
    # The root certificate a published video must verify against (the provenance
    # service's trust anchor).
    trust_anchor_path: Path = Path(".alive/certs/root.pem")
