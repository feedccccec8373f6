"""The photo checkpoint alone, with the real NSFW model; thresholds come from the policy."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alive.blobs import LocalBlobStore
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import BlobRef, Job, JobState, Verdict
from alive_tools.testing import Emitted, StageHarness
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint, decoded_for_checks
from services.moderation.policy import DEFAULT_POLICY, load_policy
from tests.support import photo_bytes, with_text


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def policy_with(tmp_path: Path, block_at: float, review_at: float) -> Path:
    """The shipped policy with other NSFW thresholds: a decision changes, no code does."""
    text = DEFAULT_POLICY.read_text()
    text = text.replace("block_at: 0.8", f"block_at: {block_at}")
    text = text.replace("review_at: 0.4", f"review_at: {review_at}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


async def check(tmp_path: Path, data: bytes, **settings: object) -> Emitted:
    blobs = LocalBlobStore(tmp_path / "blobs")
    stage = PhotoCheckpoint(PhotoCheckpointSettings(**settings), blobs)  # type: ignore[arg-type]
    async with StageHarness(stage) as harness:
        photo = blobs.put_bytes("photos/p1.png", data, "image/png")
        return await harness.send(harness.upstream(Job(job_id="p1", photo=photo)))


async def test_a_photo_passes_with_its_scores_recorded(tmp_path: Path) -> None:
    out = await check(tmp_path, photo_bytes())
    assert out.statuses[0].state == JobState.PHOTO_CLEARED
    scores = out.jobs[0].stages[-1].scores
    assert scores["colour_stddev"] > 4 and 0 <= scores["nsfw"] < 0.4


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (png(np.full((80, 80, 3), 128)), ReasonCode.PHOTO_BLANK),
        (png(np.random.default_rng(0).integers(0, 255, (32, 80, 3))), ReasonCode.PHOTO_TOO_SMALL),
        (b"\x89PNG broken", ReasonCode.PHOTO_UNDECODABLE),
    ],
)
async def test_unusable_photos_are_vetoed(tmp_path: Path, data: bytes, code: ReasonCode) -> None:
    out = await check(tmp_path, data)
    assert list(out.vetoes[0].reason_codes) == [code]
    assert out.statuses[0].state == JobState.VETOED


async def test_blank_is_judged_on_colour_not_brightness(tmp_path: Path) -> None:
    # Red and green stripes of one brightness: grey is flat, the photo is not blank.
    red, green = (200, 0, 0), (0, 102, 0)  # luma 59.8 and 59.9
    stripes = np.array([red if (x // 8) % 2 else green for x in range(96)], np.uint8)
    out = await check(tmp_path / "a", png(np.broadcast_to(stripes, (96, 96, 3))))
    assert out.statuses[0].state == JobState.PHOTO_CLEARED
    # A real but very low-contrast photo passes too.
    faint = 120 + np.random.default_rng(1).normal(0, 3, (96, 96, 3))
    out = await check(tmp_path / "b", png(np.clip(faint, 0, 255)))
    assert out.statuses[0].state == JobState.PHOTO_CLEARED
    blank = await check(tmp_path / "c", png(np.full((80, 80, 3), 9)))
    assert blank.vetoes[0].scores["colour_stddev"] == 0.0


async def test_the_policy_thresholds_decide_block_and_review(tmp_path: Path) -> None:
    blocked = await check(
        tmp_path / "a", photo_bytes(), policy_path=policy_with(tmp_path / "a", 0.0, 0.0)
    )
    assert list(blocked.vetoes[0].reason_codes) == [ReasonCode.PHOTO_SEXUAL]
    reviewed = await check(
        tmp_path / "b", photo_bytes(), policy_path=policy_with(tmp_path / "b", 1.0, 0.0)
    )
    record = reviewed.jobs[0].stages[-1]
    assert record.verdict == Verdict.REVIEW
    assert list(record.reason_codes) == [ReasonCode.PHOTO_SEXUAL]


async def test_a_model_that_fails_to_load_keeps_the_checkpoint_not_ready(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    stage = PhotoCheckpoint(
        PhotoCheckpointSettings(nsfw_model_path=broken, max_attempts=1),
        LocalBlobStore(tmp_path / "blobs"),
    )
    async with StageHarness(stage) as harness:
        assert not stage.is_ready()
        photo = stage.blobs.put_bytes("photos/p.png", photo_bytes(), "image/png")
        out = await harness.send(harness.upstream(Job(job_id="p2", photo=photo)))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.RETRIES_EXHAUSTED]


@pytest.mark.parametrize(
    ("text", "category"), [("KILL YOURSELF", "self_harm"), ("CALL 415-555-0134", "pii")]
)
async def test_text_written_in_the_photo_is_judged_like_a_prompt(
    tmp_path: Path, text: str, category: str
) -> None:
    landscape = np.asarray(Image.open(io.BytesIO(photo_bytes(480, 360))))
    out = await check(tmp_path, png(with_text(landscape, text)))
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.PHOTO_TEXT]
    assert category in out.vetoes[0].detail and text not in out.vetoes[0].detail


async def test_harmless_text_in_the_photo_passes(tmp_path: Path) -> None:
    landscape = np.asarray(Image.open(io.BytesIO(photo_bytes(480, 360))))
    out = await check(tmp_path, png(with_text(landscape, "HAPPY BIRTHDAY")))
    assert out.statuses[0].state == JobState.PHOTO_CLEARED


PHOTOS = Path(__file__).parents[2] / "data" / "moderation" / "photos"


def faces_policy(tmp_path: Path, minor_age_below: float, minor_nsfw_at: float) -> Path:
    text = DEFAULT_POLICY.read_text()
    text = text.replace("minor_age_below: 21", f"minor_age_below: {minor_age_below}")
    text = text.replace("minor_nsfw_at: 0.2", f"minor_nsfw_at: {minor_nsfw_at}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "policy.yaml").write_text(text)
    return tmp_path / "policy.yaml"


async def test_faces_and_apparent_age_are_recorded_and_signed(tmp_path: Path) -> None:
    out = await check(tmp_path, (PHOTOS / "astronaut.jpg").read_bytes())
    (job,) = out.jobs
    assert job.stages[-1].scores["faces"] == 1
    assert job.stages[-1].versions["policy"] == load_policy().version
    (signed,) = [a for a in job.attestations if a.stage == "moderation-photo"]
    assert signed.scores["faces"] == 1 and 25 < signed.scores["apparent_min_age"] < 50


async def test_a_possible_minor_with_any_sexual_signal_is_blocked_below_the_nsfw_thresholds(
    tmp_path: Path,
) -> None:
    """The rule, with the policy's age line moved above the (adult) astronaut's apparent age:
    her photo's small nsfw score, far under review_at, then blocks as sexual_minor."""
    photo = (PHOTOS / "astronaut.jpg").read_bytes()
    blocked = await check(tmp_path / "a", photo, policy_path=faces_policy(tmp_path / "a", 60, 0.0))
    assert list(blocked.vetoes[0].reason_codes) == [ReasonCode.PHOTO_MINOR_SAFETY]
    assert "apparent age" in blocked.vetoes[0].detail
    # The decision names the policy and models it was made under.
    assert blocked.vetoes[0].versions["policy"] == load_policy().version
    assert set(blocked.vetoes[0].versions) == {"policy", "nsfw", "faces", "ocr"}
    # The same apparent minor with no sexual signal at all passes.
    passed = await check(tmp_path / "b", photo, policy_path=faces_policy(tmp_path / "b", 60, 1.0))
    assert passed.statuses[0].state == JobState.PHOTO_CLEARED


class FailingReads(LocalBlobStore):
    """A store whose reads fail with an I/O error ``failures`` times, then work."""

    failures = 0

    def get_bytes(self, ref: BlobRef) -> bytes:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(5, "Input/output error")
        return super().get_bytes(ref)


async def test_a_store_io_error_on_the_photo_is_retried_not_a_veto(tmp_path: Path) -> None:
    blobs = FailingReads(tmp_path / "blobs")
    stage = PhotoCheckpoint(PhotoCheckpointSettings(max_attempts=3), blobs)
    async with StageHarness(stage) as harness:
        photo = blobs.put_bytes("photos/p.png", photo_bytes(), "image/png")
        blobs.failures = 2
        passed = await harness.send(harness.upstream(Job(job_id="io-1", photo=photo)))
        blobs.failures = 99
        failed = await harness.send(harness.upstream(Job(job_id="io-2", photo=photo)))
    assert [s.state for s in passed.statuses] == [JobState.PHOTO_CLEARED]
    assert len(harness.retry_delays) == 2 + 2
    assert not failed.vetoes
    assert [d.reason_code for d in failed.dead_letters] == [ReasonCode.RETRIES_EXHAUSTED]
    assert "Input/output error" in failed.statuses[0].detail


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_photo_is_decoded_at_the_size_the_checks_need(fmt: str) -> None:
    """Its own size comes from the header; the pixels the checks get are at most the check
    size across, so no check copies a full-size photo."""
    size, image = decoded_for_checks(photo_bytes(width=3000, height=2000, fmt=fmt), 1280)
    assert size == (3000, 2000)
    assert image.mode == "RGB"
    assert max(image.size) == 1280
    _, small = decoded_for_checks(photo_bytes(width=640, height=480, fmt=fmt), 1280)
    assert small.size == (640, 480)  # never enlarged
