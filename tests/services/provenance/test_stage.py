"""The provenance stage alone: every video leaves labelled and signed, or not at all."""

from __future__ import annotations

from pathlib import Path

from alive.blobs import LocalBlobStore
from alive.provenance import DIGITAL_SOURCE_TYPE_AI, TRUSTED, verify_video
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import GenerationInfo, Job, JobState, StageRecord, Verdict
from alive_tools.testing import StageHarness
from services.provenance.certs import ensure_dev_chain
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage
from tests.support import photo_bytes, write_clip


def scored_job(tmp_path: Path, blobs: LocalBlobStore, job_id: str = "s1") -> Job:
    write_clip(tmp_path / f"{job_id}.mp4")
    passed = [StageRecord(stage=s, verdict=Verdict.PASS) for s in ("moderation-photo", "audio")]
    return Job(
        job_id=job_id,
        prompt="waves at dusk",
        photo=blobs.put_bytes(f"photos/{job_id}.png", photo_bytes(fmt="PNG"), "image/png"),
        video=blobs.put_file(
            f"videos/{job_id}/scored.mp4", tmp_path / f"{job_id}.mp4", "video/mp4"
        ),
        generation=GenerationInfo(model_name="alive_animator", model_version="1"),
        stages=passed,
    )


async def test_a_scored_video_is_signed_and_verifies_as_trusted(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = ProvenanceSettings(
        cert_dir=tmp_path / "certs", trust_anchor_path=tmp_path / "certs" / "root.pem"
    )
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(scored_job(tmp_path, blobs)))
    assert out.statuses[0].state == JobState.SIGNED
    (signed,) = out.jobs
    assert signed.provenance.validation_state == TRUSTED
    check = verify_video(blobs.local_path(signed.video), settings.trust_anchor_path.read_bytes())
    assert check.trusted and check.digital_source_type == DIGITAL_SOURCE_TYPE_AI


async def test_a_file_that_does_not_verify_is_never_sent_on(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    other_root = ensure_dev_chain(tmp_path / "other", organisation="someone else").root_cert
    settings = ProvenanceSettings(cert_dir=tmp_path / "certs", trust_anchor_path=other_root)
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(scored_job(tmp_path, blobs)))
    assert not out.jobs
    assert out.statuses[0].state == JobState.FAILED
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.PROVENANCE_NOT_TRUSTED]
