"""Development attestation keys: one Ed25519 key per attesting stage and the trust file that
lists their public keys (alive/attestation.py). The embedded stack makes them on first use,
as it makes the C2PA development chain; the stage harness makes them in memory. Production
keys come from a secret store, one secret per service (docs/security.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alive.attestation import Keyring, key_id, private_key_pem, public_key_text
from alive.pipeline import PIPELINE
from alive.v1.events_pb2 import Job, Verdict

TRUST_FILE = "attestation-trust.json"


class StageKeys:
    """A private key for every attesting stage of the pipeline."""

    def __init__(self, private: Mapping[str, Ed25519PrivateKey] | None = None) -> None:
        self.private = (
            dict(private)
            if private is not None
            else {spec.name: Ed25519PrivateKey.generate() for spec in PIPELINE if spec.attests}
        )

    def trust_document(self) -> dict[str, list[str]]:
        return {name: [public_key_text(k.public_key())] for name, k in self.private.items()}

    def keyring(self, stage: str) -> Keyring:
        """The keyring the stage would load: its own key, and every stage's public key."""
        trusted = {
            name: {key_id(k.public_key()): k.public_key()} for name, k in self.private.items()
        }
        return Keyring(self.private.get(stage), trusted)

    def attest(self, job: Job, *stages: str, verdict: Verdict.ValueType = Verdict.PASS) -> Job:
        """Adds the attestations ``stages`` would have made on ``job`` as it is now (for a
        test that starts a job part-way down the pipeline)."""
        for name in stages:
            attestation = self.keyring(name).attest(PIPELINE.stage(name), job, verdict, {})
            job.attestations.append(attestation)
        return job


def ensure_key_dir(key_dir: Path) -> dict[str, Path]:
    """Each attesting stage's private key file in ``key_dir`` (made when missing, readable by
    the owner only) and the trust file beside them; returns the key paths by stage."""
    key_dir.mkdir(parents=True, exist_ok=True)
    paths = {spec.name: key_dir / f"{spec.name}.pem" for spec in PIPELINE if spec.attests}
    trust = key_dir / TRUST_FILE
    if not (trust.exists() and all(p.exists() for p in paths.values())):
        keys = StageKeys()
        for name, path in paths.items():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(private_key_pem(keys.private[name]))
        trust.write_text(json.dumps(keys.trust_document(), indent=2))
    return paths
