"""The ingest stage alone: Kafka submissions become jobs, or rejections with a reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore
from alive.pipeline import INGEST
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import BlobRef, ImagePromptRequest, JobState, OutputSpec, Verdict
from alive_tools.testing import StageHarness
from services.ingest.settings import IngestSettings
from services.ingest.stage import IngestStage, job_id_for
from tests.support import photo_bytes


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path)


@pytest.fixture
def harness(blobs: LocalBlobStore) -> StageHarness:
    return StageHarness(IngestStage(IngestSettings(), blobs))


def request(photo: BlobRef, request_id: str = "r1", creator_id: str = "c1") -> ImagePromptRequest:
    return ImagePromptRequest(
        request_id=request_id,
        creator_id=creator_id,
        photo=photo,
        prompt="  waves\tat dusk ",
        output=OutputSpec(width=96, height=160),
    )


async def test_a_valid_request_becomes_a_job_with_a_stored_photo(
    harness: StageHarness, blobs: LocalBlobStore
) -> None:
    upload = blobs.put_bytes("uploads/a", photo_bytes(), "application/octet-stream")
    out = await harness.send(request(upload))
    (job,) = out.jobs
    assert job.job_id == job_id_for("c1", "r1") and job.prompt == "waves at dusk"
    assert job.photo.uri.endswith(f"photos/{job.job_id}.png") and job.photo_info.width == 160
    assert (job.output.width, job.output.fps, job.output.duration_ms) == (96, 24, 4000)
    assert out.statuses[0].state == INGEST.passed_state == JobState.ACCEPTED


@pytest.mark.parametrize(
    ("key", "data", "code"),
    [
        ("elsewhere/a", photo_bytes(), ReasonCode.PHOTO_REF_OUTSIDE_STORE),
        ("uploads/b", b"not an image at all", ReasonCode.PHOTO_UNDECODABLE),
        ("uploads/c", b"", ReasonCode.PHOTO_EMPTY),
    ],
)
async def test_bad_photos_are_rejected_with_a_reason(
    harness: StageHarness, blobs: LocalBlobStore, key: str, data: bytes, code: ReasonCode
) -> None:
    out = await harness.send(request(blobs.put_bytes(key, data, "image/png")))
    assert not out.jobs
    (status,) = out.statuses
    assert (status.state, status.verdict) == (JobState.REJECTED, Verdict.REJECT)
    assert list(status.reason_codes) == [code]
    assert out.vetoes[0].checkpoint == "ingest"


async def test_a_photo_missing_from_the_store_is_rejected(harness: StageHarness) -> None:
    missing = BlobRef(uri=(harness.stage.blobs.root / "uploads" / "gone").as_uri())
    out = await harness.send(request(missing))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.PHOTO_NOT_FOUND]


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"request_id": ""}, ReasonCode.MISSING_REQUEST_ID),
        ({"creator_id": ""}, ReasonCode.MISSING_CREATOR_ID),
        ({"request_id": "r" * 129}, ReasonCode.INVALID_REQUEST_ID),
        ({"request_id": "has space"}, ReasonCode.INVALID_REQUEST_ID),
        ({"creator_id": "c" * 5000}, ReasonCode.INVALID_CREATOR_ID),
        ({"creator_id": "nul\x00"}, ReasonCode.INVALID_CREATOR_ID),
    ],
)
async def test_a_request_without_its_ids_is_dead_lettered(
    harness: StageHarness, blobs: LocalBlobStore, fields: dict[str, str], code: ReasonCode
) -> None:
    upload = blobs.put_bytes("uploads/d", photo_bytes(), "image/jpeg")
    out = await harness.send(request(upload, **fields), key=b"k")
    assert [d.reason_code for d in out.dead_letters] == [code] and not out.statuses


async def test_the_same_request_twice_makes_one_job(
    harness: StageHarness, blobs: LocalBlobStore
) -> None:
    upload = blobs.put_bytes("uploads/e", photo_bytes(), "image/jpeg")
    first = await harness.send(request(upload, request_id="same"))
    second = await harness.send(request(upload, request_id="same"))
    assert len(first.jobs) == 1 and not second.jobs and not second.statuses


async def test_a_photo_reference_the_store_refuses_is_rejected_with_why(
    harness: StageHarness, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(photo_bytes())
    (blobs.root / "uploads").mkdir(exist_ok=True)
    (blobs.root / "uploads" / "link").symlink_to(outside)
    os.mkfifo(blobs.root / "uploads" / "fifo")
    stored = blobs.put_bytes("uploads/ok", photo_bytes(), "image/jpeg")
    refs = {
        "link": (BlobRef(uri=(blobs.root / "uploads" / "link").as_uri()), "BLOB_NOT_REGULAR_FILE"),
        "fifo": (BlobRef(uri=(blobs.root / "uploads" / "fifo").as_uri()), "BLOB_NOT_REGULAR_FILE"),
        "sum": (BlobRef(uri=stored.uri, sha256="f" * 64), "BLOB_CHECKSUM_MISMATCH"),
    }
    for request_id, (ref, code) in refs.items():
        out = await harness.send(request(ref, request_id=request_id))
        assert list(out.statuses[0].reason_codes) == [code], request_id
        assert out.statuses[0].state == JobState.REJECTED
