"""Provenance settings (``ALIVE_PROVENANCE__<FIELD>``): the signing certificate chain and the
trust anchor to verify with."""

from __future__ import annotations

from pathlib import Path

from alive.pipeline import PROVENANCE
from alive.provenance import DEV_CERT_DIR, DEV_TRUST_ANCHOR
from alive.settings import StageSettings, stage_settings_config


class ProvenanceSettings(StageSettings):
    model_config = stage_settings_config(PROVENANCE)

    # The embedded default makes a development chain here on first use; production mounts
    # a real chain and key (e.g. from a KMS-backed secret) and sets create_dev_chain=false.
    cert_dir: Path = DEV_CERT_DIR
    create_dev_chain: bool = True
    # The root certificate a freshly signed file must verify against.
    trust_anchor_path: Path = DEV_TRUST_ANCHOR
    # RFC 3161 timestamp authority; without one a signature turns Invalid when the
    # certificate expires, so production sets it.
    tsa_url: str | None = None
