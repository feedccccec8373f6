"""Review: the last gate before a video goes live on a Story.

Consumes PublishRequest from alive.publish-requests; emits the job to alive.published
(PUBLISHED). Reads the job as the video checkpoint passed it (the stage ledger). Before
review acts, the runner checks that job's attestations (alive/attestation.py): every
moderation checkpoint and provenance must have signed it as it stands, so a forged or edited
ledger record or publish request ends in ATTESTATION_MISSING or ATTESTATION_INVALID. Then
review vetoes unless the video bytes are the ones attested (REVIEW_VIDEO_CHANGED) and still
verify as Trusted and AI-generated against the trust anchor (REVIEW_PROVENANCE_NOT_TRUSTED).
A request for a job that is not READY is dead-lettered (JOB_NOT_READY) and leaves the job as
it is. The human review queue comes in its own issue.
"""

from __future__ import annotations

import asyncio

from alive.blobs import BlobError, BlobStore, StageLedger, local_file
from alive.pipeline import PIPELINE, REVIEW
from alive.provenance import verify_video
from alive.reasons import ReasonCode
from alive.stage import JobIdentity, PermanentError, Stage, StageContext, Veto
from alive.v1.events_pb2 import Job, JobState, PublishRequest, StageOutcome, Verdict
from services.review.settings import ReviewSettings

# The stage whose pass makes a job READY: its ledger record is the job as it was checked.
READY_STAGE = PIPELINE.stage_reaching(JobState.READY).name


class ReviewStage(Stage[PublishRequest, ReviewSettings]):
    spec = REVIEW

    def __init__(self, settings: ReviewSettings, blobs: BlobStore, ledger: StageLedger) -> None:
        super().__init__(settings, blobs)
        self.ledger = ledger
        self._trust_anchor = b""

    async def start(self) -> None:
        self._trust_anchor = self.settings.trust_anchor_path.read_bytes()

    def identify(self, event: PublishRequest) -> JobIdentity:
        job = self._ready_job(event.job_id)
        # From the signed verdicts (the runner checks the signatures next), not the records.
        marked = sorted({a.stage for a in job.attestations if a.verdict == Verdict.REVIEW})
        if marked:
            # Held for a person (the human review queue is its own issue): not published,
            # and the job stays READY.
            raise PermanentError(
                ReasonCode.REVIEW_HUMAN_REQUIRED, "marked for human review by " + ", ".join(marked)
            )
        return JobIdentity(job.job_id, job.request_id, job.creator_id)

    def _ready_job(self, job_id: str) -> Job:
        try:
            record = self.ledger.get(READY_STAGE, job_id) if job_id else None
        except BlobError:
            record = None
        outcome = StageOutcome.FromString(record) if record else None
        if outcome is None or not outcome.HasField("passed"):
            raise PermanentError(ReasonCode.JOB_NOT_READY, f"job {job_id!r} is not READY")
        return outcome.passed

    def attested_job(self, event: PublishRequest) -> Job:
        return self._ready_job(event.job_id)

    async def process(self, event: PublishRequest, ctx: StageContext) -> Job | Veto:
        job = self._ready_job(event.job_id)
        try:
            # The file once it is checked against the sha256 the attestations vouch for.
            async with local_file(self.blobs, job.video) as video:
                check = await asyncio.to_thread(verify_video, video, self._trust_anchor)
        except BlobError as exc:
            return Veto.of(ReasonCode.REVIEW_VIDEO_CHANGED, str(exc))
        ctx.scores["provenance_trusted"] = float(check.trusted)
        if not (check.trusted and check.ai_generated):
            return Veto.of(
                ReasonCode.REVIEW_PROVENANCE_NOT_TRUSTED,
                f"{check.state}: {', '.join(check.failure_codes)}",
            )
        return job
