"""Provenance settings (``ALIVE_PROVENANCE__<FIELD>``): how videos are signed, what a signed
video must verify against, and what the manifest may disclose (docs/provenance.md).

There are no signing defaults: without ``cert_dir`` and ``trust_anchor_path`` the service
refuses to start rather than sign with a key nobody trusts."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import field_validator

from alive.limits import JobLimits
from alive.memory import mib_of
from alive.pipeline import PROVENANCE
from alive.settings import StageSettings, stage_settings_config

# Copies of the video held at once while it is labelled, signed and verified (the C2PA
# library reads the MP4 whole to hash and embed the manifest). Measured: 129 MiB for a
# 59 MiB MP4 (the largest max_video_bytes allows), benchmarks/stage_memory.py; 183 budgeted.
VIDEO_COPIES = 2


class ProvenanceSettings(StageSettings):
    model_config = stage_settings_config(PROVENANCE)
    BASE_MEMORY_MIB: ClassVar[int] = 256
    # Beyond the video: the manifest, the signer and the verification.
    JOB_MEMORY_MIB: ClassVar[int] = 64

    # The signing certificate chain, chain.pem (leaf first, then intermediates), and its
    # private key, signer.key, unless external_signer signs.
    cert_dir: Path | None = None
    # A function "module:attribute" that signs bytes with a key held elsewhere (a KMS or HSM
    # client); then cert_dir needs only chain.pem.
    external_signer: str | None = None
    signing_alg: Literal["es256", "es384", "es512", "ps256", "ps384", "ps512", "ed25519"] = "es256"
    # The root certificate(s), PEM, a freshly signed file must verify against as Trusted.
    # Several roots (one after another in the file) while a new one is rolled out.
    trust_anchor_path: Path | None = None
    # RFC 3161 timestamp authority; without one a signature turns Invalid when the
    # certificate expires, so production sets it.
    tsa_url: str | None = None
    # A thumbnail of the source photo inside the manifest: off, it would publish the photo.
    ingredient_thumbnail: bool = False
    # The job id in the manifest: off, whoever holds the video could open the job in the API.
    manifest_job_id: bool = False

    @field_validator("tsa_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"a timestamp authority is an http(s) URL, got {value!r}")
        return value or None

    def job_memory_mib(self, limits: JobLimits) -> int:
        """The largest video the generator may make, in the copies signing holds."""
        return mib_of(limits.output.max_video_bytes * VIDEO_COPIES) + self.JOB_MEMORY_MIB
