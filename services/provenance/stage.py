"""Provenance: labels every video AI-generated and signs it with a C2PA manifest.

Consumes Job from alive.scored; emits it to alive.signed with ``video`` replaced by the
labelled, signed MP4 and ``provenance`` holding the verification result. The manifest
(services/provenance/signing.py) declares AI generation by the job's model, the source photo
as ingredient, the generation parameters and the moderation outcome from the signed
attestations; never the prompt or a hash of it, nor the job id unless a setting allows it.
After signing the file is verified against the trust anchors; a file that does not verify
as Trusted and AI-generated is a PermanentError, never sent on.

The service refuses to start without signing settings and trust anchors (it never makes a
development chain), and says at start when no timestamp authority is set.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path

import c2pa

from alive.attestation import CLEARING_VERDICTS
from alive.blobs import BlobStore, output_key
from alive.jobs import PUBLISHED_VIDEO_STEP, video_prefix
from alive.pipeline import PIPELINE, PROVENANCE
from alive.provenance import verify_video
from alive.reasons import ReasonCode
from alive.scratch import scratch_folder
from alive.stage import (
    CancelToken,
    PermanentError,
    Stage,
    StageContext,
    TransientError,
    Veto,
)
from alive.v1.events_pb2 import Job, ProvenanceInfo
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import (
    GenerationFacts,
    SigningSetupError,
    VideoSigner,
    label_ai_generated,
    signer_from_settings,
)

log = logging.getLogger(__name__)


class ProvenanceStage(Stage[Job, ProvenanceSettings]):
    spec = PROVENANCE

    def __init__(self, settings: ProvenanceSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        if settings.trust_anchor_path is None:
            raise SigningSetupError(
                "set ALIVE_PROVENANCE__TRUST_ANCHOR_PATH: the root certificate(s) every "
                "signed video is verified against before it is sent on"
            )
        self._trust_anchors = settings.trust_anchor_path.read_bytes()
        self._signer = VideoSigner(
            signer_from_settings(settings), ingredient_thumbnail=settings.ingredient_thumbnail
        )
        if not settings.tsa_url:
            log.warning(
                "no timestamp authority (ALIVE_PROVENANCE__TSA_URL): every signature turns "
                "Invalid when the signing certificate expires"
            )

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        return await asyncio.to_thread(self._sign, event, ctx.cancel_token)

    def _facts(self, job: Job) -> GenerationFacts:
        # The moderation outcome from the checked, signed verdicts, not the stage records.
        cleared = [
            a
            for a in job.attestations
            if PIPELINE.is_checkpoint(a.stage) and a.verdict in CLEARING_VERDICTS
        ]
        passed = tuple(dict.fromkeys(a.stage for a in cleared))
        return GenerationFacts(
            model_name=job.generation.model_name,
            model_version=job.generation.model_version,
            seed=job.seed,
            frames=job.generation.frame_count,
            fps=job.output.fps,
            duration_ms=job.output.duration_ms,
            width=job.output.width,
            height=job.output.height,
            checkpoints_passed=passed,
            checkpoints_after_signing=tuple(c for c in PIPELINE.checkpoints if c not in passed),
            policy_versions={
                a.stage: a.versions["policy"] for a in cleared if "policy" in a.versions
            },
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
            training_use_consent=job.training_use_consent,
            job_id=job.job_id if self.settings.manifest_job_id else None,
        )

    def _sign(self, job: Job, token: CancelToken) -> Job:
        """Runs in a thread: stops (Cancelled) between steps once ``token`` is set."""
        with (
            scratch_folder("provenance") as tmp,
            self.blobs.local_copy(job.video) as video,
            self.blobs.local_copy(job.photo) as photo,
        ):
            labelled, signed = Path(tmp) / "labelled.mp4", Path(tmp) / "signed.mp4"
            label_ai_generated(video, labelled)
            token.check()
            try:
                self._signer.sign(
                    labelled,
                    photo,
                    job.photo.content_type,
                    self._facts(job),
                    signed,
                )
            except c2pa.C2paError as exc:
                # The timestamp authority is the only thing signing reaches over HTTP (remote
                # manifests are off): unreachable, it is retried like any outage.
                if self.settings.tsa_url and "http" in str(exc).lower():
                    raise TransientError(f"timestamp authority: {exc}") from exc
                raise
            token.check()
            check = verify_video(signed, self._trust_anchors)
            if not (check.trusted and check.ai_generated):
                raise PermanentError(
                    ReasonCode.PROVENANCE_NOT_TRUSTED,
                    f"signed file verifies as {check.state}: {', '.join(check.failure_codes)}",
                )
            ref = self.blobs.put_file(
                output_key(video_prefix(job.job_id, PUBLISHED_VIDEO_STEP), ".mp4"),
                signed,
                "video/mp4",
            )
        job.video.CopyFrom(ref)
        job.provenance.CopyFrom(
            ProvenanceInfo(
                validation_state=check.state, digital_source_type=check.digital_source_type or ""
            )
        )
        return job
