"""The review stage alone: it publishes only a READY job that every checkpoint and provenance
signed as it stands, whose video is the one checked and still verifies as Trusted, of a
creator under the publish rate limit; a marked or sampled job waits for a person, and a
person's signed decision ends it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from alive.attestation import signed_bytes
from alive.blobs import LocalBlobStore, StageLedger
from alive.pipeline import PIPELINE, REVIEW
from alive.provenance import DIGITAL_SOURCE_TYPE_AI
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import (
    Job,
    JobState,
    PublishedVideo,
    PublishRequest,
    ReviewDecision,
    ReviewItem,
    ReviewOutcome,
    StageOutcome,
    StageRecord,
    Verdict,
)
from alive_tools.keys import StageKeys
from alive_tools.signing_chain import ensure_dev_chain
from alive_tools.testing import StageHarness
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage
from services.review import decisions
from services.review.settings import ReviewSettings
from services.review.stage import HUMAN_APPROVED, READY_STAGE, ReviewStage, sampled
from tests.services.provenance.test_stage import scored_job

# One set of stage keys for the stages that made the job and for review, which checks them.
KEYS = StageKeys()
# The review web app's decision key, and one review does not trust.
DECISION_KEY = Ed25519PrivateKey.generate()
STRANGER_KEY = Ed25519PrivateKey.generate()


@pytest.fixture
async def ready(tmp_path: Path) -> tuple[LocalBlobStore, Job, Path]:
    """A signed job as the video checkpoint passed it, with the trust anchor it verifies
    against."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    anchor = ensure_dev_chain(tmp_path / "certs").root_cert  # the service makes none
    signing = ProvenanceSettings(cert_dir=tmp_path / "certs", trust_anchor_path=anchor)
    async with StageHarness(ProvenanceStage(signing, blobs), keys=KEYS) as provenance:
        (job,) = (
            await provenance.send(provenance.upstream(scored_job(tmp_path, blobs, "r1")))
        ).jobs
    del job.stages[:]
    job.stages.extend(StageRecord(stage=c, verdict=Verdict.PASS) for c in PIPELINE.checkpoints)
    return blobs, KEYS.attest(job, "moderation-video"), anchor


def mark_ready(blobs: LocalBlobStore, job: Job) -> None:
    StageLedger(blobs).decide(READY_STAGE, job.job_id, StageOutcome(passed=job).SerializeToString())


def review_stage(
    blobs: LocalBlobStore, anchor: Path, tmp: Path | None = None, **settings: object
) -> StageHarness:
    """Review with no random sample unless asked for, trusting DECISION_KEY's decisions."""
    keys = []
    if tmp is not None:
        public = tmp / "decisions.pub.pem"
        public.write_bytes(
            DECISION_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        keys.append(public)
    own = ReviewSettings(
        trust_anchor_path=anchor,
        decision_public_key_paths=keys,
        **{"human_sample_rate": 0.0, **settings},  # type: ignore[arg-type]
    )
    return StageHarness(ReviewStage(own, blobs, StageLedger(blobs)), keys=KEYS)


async def review(
    blobs: LocalBlobStore, anchor: Path, job_id: str, **settings: object
) -> StageHarness:
    harness = review_stage(blobs, anchor, **settings)
    await harness.stage.start()
    await harness.send(PublishRequest(job_id=job_id, requested_by="test"), key=job_id.encode())
    return harness


def decision(
    job: Job,
    outcome: ReviewOutcome.ValueType,
    reason: str = "",
    key: Ed25519PrivateKey = DECISION_KEY,
) -> PublishRequest:
    signed = decisions.sign(
        ReviewDecision(
            decision_id="d1",
            job_id=job.job_id,
            reviewer="ana",
            outcome=outcome,
            reason_code=reason,
            decided_at_ms=2,
            queued_at_ms=1,
            video_sha256=job.video.sha256,
            origin="publish",
        ),
        key,
    )
    return PublishRequest(job_id=job.job_id, requested_by="review:ana", decision=signed)


async def test_a_clean_ready_job_is_published_with_what_a_story_needs(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert out.statuses[0].state == JobState.PUBLISHED
    (published,) = out.outputs
    assert isinstance(published, PublishedVideo)
    assert published.job_id == job.job_id and published.video == job.video
    assert published.ai_generated
    assert published.digital_source_type == DIGITAL_SOURCE_TYPE_AI
    assert published.provenance_state == "Trusted"
    assert "prompt" not in PublishedVideo.DESCRIPTOR.fields_by_name  # the prompt stays behind
    # Review's signed statement travels with it: a Story service can check it.
    attestation = published.review
    assert attestation.stage == REVIEW.name and attestation.subject_sha256 == job.video.sha256
    public = KEYS.keyring(REVIEW.name).trusted[REVIEW.name][attestation.key_id]
    public.verify(attestation.signature, signed_bytes(attestation))
    assert attestation.scores[HUMAN_APPROVED] == 0.0


@pytest.mark.parametrize("checkpoint", PIPELINE.checkpoints)
async def test_a_checkpoint_that_did_not_sign_is_vetoed(
    ready: tuple[LocalBlobStore, Job, Path], checkpoint: str
) -> None:
    blobs, job, anchor = ready
    kept = [a for a in job.attestations if a.stage != checkpoint]
    del job.attestations[:]
    job.attestations.extend(kept)
    mark_ready(blobs, job)
    harness = await review(blobs, anchor, job.job_id)
    out = harness.emitted
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.ATTESTATION_MISSING]
    assert checkpoint in out.vetoes[0].detail and not out.jobs
    failures = harness.metrics.attestation_failures.labels(
        "review", checkpoint, "ATTESTATION_MISSING"
    )
    assert failures._value.get() == 1


async def test_a_ledger_record_edited_after_signing_is_vetoed(
    ready: tuple[LocalBlobStore, Job, Path], tmp_path: Path
) -> None:
    """A READY record rewritten in the store to point at another (validly signed) video."""
    blobs, job, anchor = ready
    other = blobs.put_bytes("videos/other.mp4", blobs.get_bytes(job.video) + b"x", "video/mp4")
    job.video.CopyFrom(other)
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.ATTESTATION_INVALID]
    assert "video is not the one it judged" in out.vetoes[0].detail and not out.jobs


async def test_a_checkpoint_signed_with_an_untrusted_key_is_vetoed(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    StageKeys().attest(job, "moderation-video")  # the newest counts, and its key is unknown
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.ATTESTATION_INVALID]
    assert "not a trusted moderation-video key" in out.vetoes[0].detail


async def test_a_changed_video_is_vetoed(ready: tuple[LocalBlobStore, Job, Path]) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    path = blobs.local_path(job.video)
    path.write_bytes(path.read_bytes() + b"tampered")
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.REVIEW_VIDEO_CHANGED]


async def test_a_video_signed_under_another_root_is_vetoed(
    ready: tuple[LocalBlobStore, Job, Path], tmp_path: Path
) -> None:
    blobs, job, _ = ready
    mark_ready(blobs, job)
    stranger = ensure_dev_chain(tmp_path / "stranger", organisation="not Alive").root_cert
    out = (await review(blobs, stranger, job.job_id)).emitted
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.REVIEW_PROVENANCE_NOT_TRUSTED]
    assert out.statuses[0].state == JobState.VETOED


async def test_a_job_that_is_not_ready_is_dead_lettered_and_left_alone(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.JOB_NOT_READY]
    assert not out.statuses


async def test_a_job_marked_for_review_waits_for_a_person(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    KEYS.attest(job, "moderation-prompt", verdict=Verdict.REVIEW)
    job.stages[1].verdict = Verdict.REVIEW
    job.stages[1].reason_codes.append(ReasonCode.PROMPT_REAL_PERSON)
    mark_ready(blobs, job)
    harness = await review(blobs, anchor, job.job_id)
    out = harness.emitted
    (item,) = out.outputs
    assert isinstance(item, ReviewItem) and item.job_id == job.job_id
    assert list(item.reason_codes) == [ReasonCode.PROMPT_REAL_PERSON]
    assert item.video_sha256 == job.video.sha256 and item.origin == "publish"
    (status,) = out.statuses
    assert status.state == JobState.READY and status.verdict == Verdict.REVIEW
    assert not out.dead_letters and not out.vetoes
    assert harness.ledger.get(REVIEW.name, job.job_id) is None  # the decision will be processed


async def test_a_mark_in_an_unsigned_record_alone_does_not_hold(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    """The signed verdicts decide, not the records beside them (which anyone could edit)."""
    blobs, job, anchor = ready
    job.stages[1].verdict = Verdict.REVIEW
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert out.statuses[0].state == JobState.PUBLISHED


async def test_the_random_sample_sends_clean_jobs_to_a_person(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id, human_sample_rate=1.0)).emitted
    (item,) = out.outputs
    assert isinstance(item, ReviewItem)
    assert list(item.reason_codes) == [ReasonCode.REVIEW_SAMPLED]


def test_the_sample_draws_about_its_rate_and_the_same_each_time() -> None:
    drawn = [sampled(f"job-{n}", 0.1) for n in range(4000)]
    assert 300 < sum(drawn) < 500
    assert drawn == [sampled(f"job-{n}", 0.1) for n in range(4000)]
    assert not any(sampled(f"job-{n}", 0.0) for n in range(1000))


async def test_a_persons_approval_publishes_a_held_job_once(
    ready: tuple[LocalBlobStore, Job, Path], tmp_path: Path
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    harness = review_stage(blobs, anchor, tmp_path, human_sample_rate=1.0)
    await harness.stage.start()
    held = await harness.send(PublishRequest(job_id=job.job_id), key=job.job_id.encode())
    assert isinstance(held.outputs[0], ReviewItem)
    approval = decision(job, ReviewOutcome.REVIEW_APPROVE)
    out = await harness.send(approval, key=job.job_id.encode())
    assert out.statuses[0].state == JobState.PUBLISHED
    (published,) = out.outputs
    assert isinstance(published, PublishedVideo)
    assert published.review.scores[HUMAN_APPROVED] == 1.0
    again = await harness.send(approval, key=job.job_id.encode())  # delivered twice
    assert not again.outputs and not again.statuses


async def test_a_persons_rejection_vetoes_with_their_reason(
    ready: tuple[LocalBlobStore, Job, Path], tmp_path: Path
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    harness = review_stage(blobs, anchor, tmp_path)
    await harness.stage.start()
    out = await harness.send(
        decision(job, ReviewOutcome.REVIEW_REJECT, ReasonCode.VIDEO_SEXUAL), key=job.job_id.encode()
    )
    assert out.statuses[0].state == JobState.VETOED
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.REVIEW_REJECTED, ReasonCode.VIDEO_SEXUAL]
    assert not out.outputs


@pytest.mark.parametrize("forgery", ["untrusted key", "edited", "other video", "no policy reason"])
async def test_a_decision_that_does_not_verify_is_not_acted_on(
    ready: tuple[LocalBlobStore, Job, Path], tmp_path: Path, forgery: str
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    harness = review_stage(blobs, anchor, tmp_path)
    await harness.stage.start()
    key = STRANGER_KEY if forgery == "untrusted key" else DECISION_KEY
    request = decision(job, ReviewOutcome.REVIEW_APPROVE, key=key)
    if forgery == "edited":
        request.decision.reviewer = "mallory"
    if forgery == "other video":
        request.decision.video_sha256 = "0" * 64
        decisions.sign(request.decision, DECISION_KEY)
    if forgery == "no policy reason":  # signed, but a rejection must give a policy reason
        request = decision(job, ReviewOutcome.REVIEW_REJECT, ReasonCode.JOB_ENDED)
    out = await harness.send(request, key=job.job_id.encode())
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.REVIEW_DECISION_INVALID]
    assert not out.outputs


async def test_a_creator_over_the_publish_rate_limit_is_vetoed(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    harness = review_stage(blobs, anchor, max_publishes_per_creator=2, rate_window_s=3600)
    stage = harness.stage
    assert isinstance(stage, ReviewStage)
    await stage.start()
    for earlier in ("earlier-1", "earlier-2"):
        await stage.publishes.record(job.creator_id, earlier, 3600)
    out = await harness.send(PublishRequest(job_id=job.job_id), key=job.job_id.encode())
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.REVIEW_RATE_LIMITED]
    assert out.statuses[0].state == JobState.VETOED


async def test_publishes_outside_the_window_and_other_creators_do_not_count(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    harness = review_stage(blobs, anchor, max_publishes_per_creator=1, rate_window_s=3600)
    stage = harness.stage
    assert isinstance(stage, ReviewStage)
    await stage.start()
    await stage.publishes.record("someone-else", "theirs", 3600)
    two_hours_ago = int(time.time() * 1000) - 2 * 3600 * 1000
    await stage.publishes.record(job.creator_id, "long-ago", 3 * 3600, at_ms=two_hours_ago)
    assert await stage.publishes.recent(job.creator_id, 3 * 3600, "next-job") == 1
    out = await harness.send(PublishRequest(job_id=job.job_id), key=job.job_id.encode())
    assert out.statuses[0].state == JobState.PUBLISHED
    # Its own publish now counts against the creator's next one.
    assert await stage.publishes.recent(job.creator_id, 3600, "next-job") == 1


async def test_a_mark_whose_record_names_no_reason_still_waits_for_a_person(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    KEYS.attest(job, "moderation-video", verdict=Verdict.REVIEW)
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    (item,) = out.outputs
    assert isinstance(item, ReviewItem)
    assert list(item.reason_codes) == [ReasonCode.REVIEW_HUMAN_REQUIRED]
    assert "moderation-video" in out.statuses[0].detail
