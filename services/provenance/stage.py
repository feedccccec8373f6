"""Provenance: labels every video AI-generated and signs it with a C2PA manifest.

Consumes Job from alive.scored; emits it to alive.signed with ``video`` replaced by the
labelled, signed MP4 and ``provenance`` holding the verification result. The manifest's
first action is c2pa.created with digitalSourceType trainedAlgorithmicMedia and the
generator model as software agent; the source photo is an ``inputTo`` ingredient; a custom
assertion records the job, the model, the prompt's SHA-256 (never the prompt) and the
checkpoint verdicts so far. After signing the file is verified against the trust anchor;
a file that does not verify as Trusted is a PermanentError, never sent on.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from alive.blobs import BlobStore, output_key
from alive.jobs import asset_id, video_prefix
from alive.pipeline import PIPELINE, PROVENANCE
from alive.provenance import verify_video
from alive.reasons import ReasonCode
from alive.stage import PermanentError, Stage, StageContext, Veto
from alive.v1.events_pb2 import Job, ProvenanceInfo, Verdict
from services.provenance.certs import CertChain, ensure_dev_chain
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import GenerationFacts, VideoSigner, label_ai_generated


class ProvenanceStage(Stage[Job, ProvenanceSettings]):
    spec = PROVENANCE

    def __init__(self, settings: ProvenanceSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self._signer: VideoSigner | None = None
        self._trust_anchor = b""

    async def start(self) -> None:
        directory = self.settings.cert_dir
        chain = (
            ensure_dev_chain(directory)
            if self.settings.create_dev_chain
            else CertChain.in_directory(directory)
        )
        self._signer = VideoSigner(chain, tsa_url=self.settings.tsa_url)
        self._trust_anchor = self.settings.trust_anchor_path.read_bytes()

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        return await asyncio.to_thread(self._sign, event)

    def _sign(self, job: Job) -> Job:
        assert self._signer is not None
        facts = GenerationFacts(
            asset_id=asset_id(job.job_id),
            model_name=job.generation.model_name,
            model_version=job.generation.model_version,
            prompt_sha256=hashlib.sha256(job.prompt.encode()).hexdigest(),
            # From the checked, signed verdicts, not the unsigned stage records.
            moderation={
                a.stage: Verdict.Name(a.verdict).lower()
                for a in job.attestations
                if PIPELINE.is_checkpoint(a.stage)
            },
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        with tempfile.TemporaryDirectory() as tmp:
            labelled, signed = Path(tmp) / "labelled.mp4", Path(tmp) / "signed.mp4"
            label_ai_generated(self.blobs.local_path(job.video), labelled)
            self._signer.sign(
                labelled, self.blobs.local_path(job.photo), job.photo.content_type, facts, signed
            )
            check = verify_video(signed, self._trust_anchor)
            if not (check.trusted and check.ai_generated):
                raise PermanentError(
                    ReasonCode.PROVENANCE_NOT_TRUSTED,
                    f"signed file verifies as {check.state}: {', '.join(check.failure_codes)}",
                )
            ref = self.blobs.put_file(
                output_key(video_prefix(job.job_id, "signed"), ".mp4"), signed, "video/mp4"
            )
        job.video.CopyFrom(ref)
        job.provenance.CopyFrom(
            ProvenanceInfo(
                validation_state=check.state, digital_source_type=check.digital_source_type or ""
            )
        )
        return job
