"""Review: the last gate before a video goes live on a Story.

Consumes PublishRequest from alive.publish-requests; emits a PublishedVideo (the video, its AI
label and provenance status, never the prompt) to alive.published (PUBLISHED). Reads the job
as the video checkpoint passed it (the stage ledger). Before review acts, the runner checks
that job's attestations (alive/attestation.py): every moderation checkpoint and provenance
must have signed it as it stands, so a forged or edited ledger record or publish request ends
in ATTESTATION_MISSING or ATTESTATION_INVALID. A request for a job that is not READY is
dead-lettered (JOB_NOT_READY) and leaves the job as it is.

Then review vetoes unless the video bytes are the ones attested (REVIEW_VIDEO_CHANGED), still
verify as Trusted and AI-generated against the trust anchor (REVIEW_PROVENANCE_NOT_TRUSTED),
and the creator is under the publish rate limit (REVIEW_RATE_LIMITED). A job that a
checkpoint marked REVIEW (its signed verdict), or that the random sample draws, is held: an
item on alive.review-queue, the job stays READY. The review web app (services/review/web)
sends a person's decision back as a publish request carrying the signed decision
(services/review/decisions.py): a rejection vetoes (REVIEW_REJECTED and the reviewer's
reason), an approval publishes once the checks above pass again. The stage ledger makes a
decision that arrives twice act once.
"""

from __future__ import annotations

import asyncio
import hashlib
import json

from alive.attestation import signed_scores
from alive.blobs import BlobError, BlobStore, StageLedger, local_file
from alive.jobs import publish_log_key
from alive.pipeline import PIPELINE, REVIEW
from alive.provenance import DIGITAL_SOURCE_TYPE_AI, verify_video
from alive.reasons import Finding, ReasonCode
from alive.stage import Hold, JobIdentity, PermanentError, Stage, StageContext, Veto
from alive.telemetry import now_ms
from alive.v1.events_pb2 import (
    Job,
    JobState,
    PublishedVideo,
    PublishRequest,
    ReviewItem,
    ReviewOutcome,
    StageOutcome,
    Verdict,
)
from services.review import decisions
from services.review.settings import ReviewSettings

# The stage whose pass makes a job READY: its ledger record is the job as it was checked.
READY_STAGE = PIPELINE.stage_reaching(JobState.READY).name
# The score in review's attestation that says a person approved the video.
HUMAN_APPROVED = "human_approved"


class PublishLog:
    """When each creator's videos went live, for the rate limit: one record per creator in
    the blob store (review's own folder), so a restart keeps it.

    Read-modify-write under a lock: exact within one replica. With several replicas two
    publishes of one creator may race and the limit be exceeded by one; the request topic is
    keyed by job, not creator, so no partitioning makes this exact across replicas.
    """

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs
        self._lock = asyncio.Lock()

    def _read(self, creator_id: str) -> dict[str, int]:
        data = self._blobs.read_key(publish_log_key(creator_id))
        return {str(k): int(v) for k, v in json.loads(data).items()} if data else {}

    async def recent(self, creator_id: str, window_s: int, job_id: str) -> int:
        """How many of the creator's other videos went live in the last ``window_s``."""
        since = now_ms() - window_s * 1000
        published = await asyncio.to_thread(self._read, creator_id)
        return sum(1 for job, at in published.items() if at >= since and job != job_id)

    async def record(
        self, creator_id: str, job_id: str, window_s: int, at_ms: int | None = None
    ) -> None:
        """Adds a publish (now, unless ``at_ms`` says when) and forgets those out of the
        window; a job recorded before keeps its first time."""
        async with self._lock:
            published = await asyncio.to_thread(self._read, creator_id)
            since = now_ms() - window_s * 1000
            kept = {job: at for job, at in published.items() if at >= since}
            kept.setdefault(job_id, now_ms() if at_ms is None else at_ms)
            data = json.dumps(kept).encode()
            await asyncio.to_thread(self._blobs.write_key, publish_log_key(creator_id), data)


def sampled(job_id: str, rate: float) -> bool:
    """Whether the random sample draws this job: the same answer for every delivery."""
    draw = int.from_bytes(hashlib.sha256(f"review-sample:{job_id}".encode()).digest()[:8])
    return draw < rate * 2**64


class ReviewStage(Stage[PublishRequest, ReviewSettings]):
    spec = REVIEW

    def __init__(self, settings: ReviewSettings, blobs: BlobStore, ledger: StageLedger) -> None:
        super().__init__(settings, blobs)
        self.ledger = ledger
        self.publishes = PublishLog(blobs)
        self._trust_anchor = b""
        self._decision_keys = decisions.load_public_keys(settings.decision_public_key_paths)

    async def start(self) -> None:
        self._trust_anchor = self.settings.trust_anchor_path.read_bytes()

    def identify(self, event: PublishRequest) -> JobIdentity:
        job = self._ready_job(event.job_id)
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

    async def process(self, event: PublishRequest, ctx: StageContext) -> Job | Veto | Hold:
        job = self._ready_job(event.job_id)
        approved = False
        if event.HasField("decision"):
            decision = event.decision
            wrong = decisions.problem(decision, self._decision_keys, job.job_id, job.video.sha256)
            if wrong is not None:
                return Veto.of(ReasonCode.REVIEW_DECISION_INVALID, wrong)
            if decision.outcome == ReviewOutcome.REVIEW_REJECT:
                return Veto(
                    (
                        Finding(ReasonCode.REVIEW_REJECTED, f"decision {decision.decision_id}"),
                        Finding(ReasonCode(decision.reason_code)),
                    )
                )
            approved = True
        veto = await self._check_video(job, ctx)
        if veto is not None:
            return veto
        if not approved:
            settings = self.settings
            recent = await self.publishes.recent(job.creator_id, settings.rate_window_s, job.job_id)
            if recent >= settings.max_publishes_per_creator:
                return Veto.of(
                    ReasonCode.REVIEW_RATE_LIMITED,
                    f"{recent} videos published in {settings.rate_window_s} s; "
                    f"the limit is {settings.max_publishes_per_creator}",
                )
            hold = self._hold(job)
            if hold is not None:
                return hold
        ctx.scores[HUMAN_APPROVED] = float(approved)
        await self.publishes.record(job.creator_id, job.job_id, self.settings.rate_window_s)
        return job

    async def _check_video(self, job: Job, ctx: StageContext) -> Veto | None:
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
        return None

    def _hold(self, job: Job) -> Hold | None:
        """The job waits for a person when a checkpoint's signed verdict says so, or the
        sample draws it."""
        marked = {
            a.stage
            for a in job.attestations
            if a.verdict == Verdict.REVIEW and PIPELINE.is_checkpoint(a.stage)
        }
        findings = [
            Finding(ReasonCode(code), f"marked by {record.stage}")
            for record in job.stages
            if record.stage in marked
            for code in record.reason_codes
            if code in set(ReasonCode)
        ]
        if marked and not findings:  # the reasons live in unsigned records: never lose the mark
            findings.append(Finding(ReasonCode.REVIEW_HUMAN_REQUIRED, ", ".join(sorted(marked))))
        if not marked and sampled(job.job_id, self.settings.human_sample_rate):
            findings.append(Finding(ReasonCode.REVIEW_SAMPLED, "drawn by the random sample"))
        if not findings:
            return None
        item = ReviewItem(
            job_id=job.job_id,
            creator_id=job.creator_id,
            reason_codes=[f.code for f in findings],
            origin="publish",
            queued_at_ms=now_ms(),
            video_sha256=job.video.sha256,
        )
        return Hold(item, tuple(findings))

    def output(self, job: Job) -> PublishedVideo:
        return published_video(job)


def published_video(job: Job) -> PublishedVideo:
    """What a Story service needs of a job review passed; the prompt stays behind."""
    review = job.attestations[-1]
    assert review.stage == REVIEW.name, "the runner attests before it sends"
    scores = signed_scores(job, REVIEW.name)
    return PublishedVideo(
        job_id=job.job_id,
        creator_id=job.creator_id,
        video=job.video,
        ai_generated=job.provenance.digital_source_type == DIGITAL_SOURCE_TYPE_AI,
        digital_source_type=job.provenance.digital_source_type,
        provenance_state="Trusted" if scores.get("provenance_trusted") else "Invalid",
        published_at_ms=now_ms(),
        review=review,
    )
