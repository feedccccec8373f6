"""Provenance settings: the signing certificate chain and the trust anchor to verify with."""

from __future__ import annotations

from pathlib import Path

from alive.settings import ServiceSettings


class ProvenanceSettings(ServiceSettings):
    # The embedded default makes a development chain here on first use; production mounts
    # a real chain and key (e.g. from a KMS-backed secret) and sets create_dev_chain=false.
    cert_dir: Path = Path(".alive/certs")
    create_dev_chain: bool = True
    # The root certificate verification trusts; empty means cert_dir/root.pem.
    trust_anchor_path: Path | None = None
    # RFC 3161 timestamp authority; without one a signature turns Invalid when the
    # certificate expires, so production sets it.
    tsa_url: str | None = None

    def trust_anchor(self) -> Path:
        return self.trust_anchor_path or self.cert_dir / "root.pem"
