"""The provenance stage alone: every video leaves labelled and signed, or not at all; the
service refuses to start without signing settings."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore
from alive.pipeline import PIPELINE
from alive.provenance import DIGITAL_SOURCE_TYPE_AI, TRUSTED, verify_video
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import GenerationInfo, Job, JobState, OutputSpec, Verdict
from alive_tools.embedded.ports import free_port
from alive_tools.signing_chain import ensure_dev_chain
from alive_tools.testing import StageHarness
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import SigningSetupError
from services.provenance.stage import ProvenanceStage
from tests.provenance_support import local_tsa
from tests.support import photo_bytes, write_clip

PROMPT = "waves at dusk over the old harbour"
POLICIES = {"moderation-photo": "photo-policy-3", "moderation-prompt": "prompt-policy-9"}


def scored_job(tmp_path: Path, blobs: LocalBlobStore, job_id: str = "s1") -> Job:
    write_clip(tmp_path / f"{job_id}.mp4")
    return Job(
        job_id=job_id,
        creator_id="creator-1",
        prompt=PROMPT,
        # As ingest stores it: the prompt's blob, whose digest outlives the prompt field.
        prompt_ref=blobs.put_bytes(f"prompts/{job_id}.txt", PROMPT.encode(), "text/plain"),
        seed=31337,
        output=OutputSpec(width=64, height=112, fps=12, duration_ms=1000),
        photo=blobs.put_bytes(f"photos/{job_id}.png", photo_bytes(fmt="PNG"), "image/png"),
        video=blobs.put_file(
            f"videos/{job_id}/scored.mp4", tmp_path / f"{job_id}.mp4", "video/mp4"
        ),
        generation=GenerationInfo(
            model_name="i2v_diffusion", model_version="ltx-video", frame_count=12
        ),
    )


def attested(harness: StageHarness, job: Job) -> Job:
    """``job`` as the earlier stages signed it, the checkpoints with their policy versions."""
    for name in ProvenanceStage.spec.requires:
        versions = {"policy": POLICIES[name]} if name in POLICIES else {}
        keyring = harness.keys.keyring(name)
        job.attestations.append(
            keyring.attest(PIPELINE.stage(name), job, Verdict.PASS, versions, None)
        )
    return job


def dev_settings(tmp_path: Path, **extra: object) -> ProvenanceSettings:
    chain = ensure_dev_chain(tmp_path / "certs")
    return ProvenanceSettings(
        cert_dir=tmp_path / "certs", trust_anchor_path=chain.root_cert, **extra
    )


async def test_a_scored_video_is_signed_and_verifies_as_trusted(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = dev_settings(tmp_path)
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(attested(harness, scored_job(tmp_path, blobs)))
    assert out.statuses[0].state == JobState.SIGNED
    (signed,) = out.jobs
    assert signed.provenance.validation_state == TRUSTED
    assert signed.prompt == "" and signed.prompt_ref.sha256  # no later stage reads it
    assert settings.trust_anchor_path is not None
    video = blobs.local_path(signed.video)
    check = verify_video(video, settings.trust_anchor_path.read_bytes())
    assert check.trusted and check.digital_source_type == DIGITAL_SOURCE_TYPE_AI
    # The model of the job, not a fixed one: a diffusion model shows up as itself.
    assert (check.generator, check.generator_version) == ("i2v_diffusion", "ltx-video")
    assert check.alive_assertion is not None
    assert check.alive_assertion["parameters"] == {
        "seed": 31337,
        "frames": 12,
        "fps": 12,
        "duration_ms": 1000,
        "width": 64,
        "height": 112,
        "training_use_consent": False,
    }
    assert check.alive_assertion["moderation"] == {
        "checkpoints_passed": ["moderation-photo", "moderation-prompt"],
        "checkpoints_after_signing": ["moderation-video"],
        "policy_versions": POLICIES,
    }
    assert "job_id" not in check.alive_assertion
    data = video.read_bytes()
    for secret in (PROMPT, "harbour", "s1.png", "creator-1"):
        assert secret.encode() not in data, secret


async def test_the_job_id_goes_in_only_where_the_setting_allows(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = dev_settings(tmp_path, manifest_job_id=True)
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(attested(harness, scored_job(tmp_path, blobs, "job-7")))
    (signed,) = out.jobs
    assert settings.trust_anchor_path is not None
    check = verify_video(blobs.local_path(signed.video), settings.trust_anchor_path.read_bytes())
    assert check.alive_assertion is not None
    assert check.alive_assertion["job_id"] == "job-7"


async def test_a_file_that_does_not_verify_is_never_sent_on(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    other_root = ensure_dev_chain(tmp_path / "other", organisation="someone else").root_cert
    settings = dev_settings(tmp_path).model_copy(update={"trust_anchor_path": other_root})
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(attested(harness, scored_job(tmp_path, blobs)))
    assert not out.jobs
    assert out.statuses[0].state == JobState.FAILED
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.PROVENANCE_NOT_TRUSTED]


async def test_an_unreachable_timestamp_authority_is_retried_then_fails(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    settings = dev_settings(tmp_path, tsa_url=f"http://127.0.0.1:{free_port()}/")
    async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
        out = await harness.send(attested(harness, scored_job(tmp_path, blobs)))
    assert not out.jobs
    assert harness.retry_delays  # retried before giving up
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.RETRIES_EXHAUSTED]


async def test_a_timestamped_video_leaves_the_stage(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with local_tsa(tmp_path / "tsa") as tsa:
        settings = dev_settings(tmp_path, tsa_url=tsa.url)
        async with StageHarness(ProvenanceStage(settings, blobs)) as harness:
            out = await harness.send(attested(harness, scored_job(tmp_path, blobs)))
    (signed,) = out.jobs
    assert settings.trust_anchor_path is not None
    anchors = settings.trust_anchor_path.read_bytes() + tsa.root_pem
    check = verify_video(blobs.local_path(signed.video), anchors)
    assert check.trusted and check.timestamped


def test_without_signing_settings_the_service_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = ensure_dev_chain(tmp_path / "certs").root_cert
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    blobs = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(SigningSetupError, match="TRUST_ANCHOR_PATH"):
        ProvenanceStage(ProvenanceSettings(), blobs)
    with pytest.raises(SigningSetupError, match="ALIVE_PROVENANCE__CERT_DIR"):
        ProvenanceStage(ProvenanceSettings(trust_anchor_path=root), blobs)
    # Refusing made nothing: no development chain (the old default, .alive/certs) appeared.
    assert list(workdir.iterdir()) == []


def test_without_a_timestamp_authority_the_start_says_signatures_expire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with caplog.at_level(logging.WARNING, logger="services.provenance.stage"):
        ProvenanceStage(dev_settings(tmp_path), blobs)
    assert any("expires" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="services.provenance.stage"):
        ProvenanceStage(dev_settings(tmp_path, tsa_url="http://127.0.0.1:9/"), blobs)
    assert not caplog.records
