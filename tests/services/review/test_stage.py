"""The review stage alone: it publishes only a READY job that every checkpoint and provenance
signed as it stands, whose video is the one checked and still verifies as Trusted."""

from __future__ import annotations

from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore, StageLedger
from alive.pipeline import PIPELINE
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import Job, JobState, PublishRequest, StageOutcome, StageRecord, Verdict
from alive_tools.keys import StageKeys
from alive_tools.signing_chain import ensure_dev_chain
from alive_tools.testing import StageHarness
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage
from services.review.settings import ReviewSettings
from services.review.stage import READY_STAGE, ReviewStage
from tests.services.provenance.test_stage import scored_job

# One set of stage keys for the stages that made the job and for review, which checks them.
KEYS = StageKeys()


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
    StageLedger(blobs).put(READY_STAGE, job.job_id, StageOutcome(passed=job).SerializeToString())


async def review(blobs: LocalBlobStore, anchor: Path, job_id: str) -> StageHarness:
    harness = StageHarness(
        ReviewStage(ReviewSettings(trust_anchor_path=anchor), blobs, StageLedger(blobs)), keys=KEYS
    )
    await harness.stage.start()
    await harness.send(PublishRequest(job_id=job_id, requested_by="test"), key=job_id.encode())
    return harness


async def test_a_ready_job_is_published(ready: tuple[LocalBlobStore, Job, Path]) -> None:
    blobs, job, anchor = ready
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert out.statuses[0].state == JobState.PUBLISHED
    assert out.jobs[0].job_id == job.job_id and out.jobs[0].stages[-1].stage == "review"


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


async def test_a_job_marked_for_review_is_held_not_published(
    ready: tuple[LocalBlobStore, Job, Path],
) -> None:
    blobs, job, anchor = ready
    KEYS.attest(job, "moderation-prompt", verdict=Verdict.REVIEW)
    mark_ready(blobs, job)
    out = (await review(blobs, anchor, job.job_id)).emitted
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.REVIEW_HUMAN_REQUIRED]
    assert not out.statuses and not out.jobs  # still READY, waiting for a person
