"""The ingest stage alone: Kafka submissions become jobs with unguessable ids, or rejections
with a reason; a photo is taken only from the request's own upload area."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from alive.attestation import signed_scores
from alive.blobs import LocalBlobStore
from alive.consent import TRAINING_CONSENT_SCORE
from alive.erasure import ErasedJob, creator_job_ids, indexed_job
from alive.jobs import upload_area
from alive.limits import JobLimits
from alive.pipeline import INGEST
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import BlobRef, ImagePromptRequest, JobState, OutputSpec, Verdict
from alive_tools.testing import StageHarness
from services.ingest.settings import IngestSettings
from services.ingest.stage import IngestStage, JobIds
from tests.support import photo_bytes


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> IngestSettings:
    key = tmp_path / "job-id.key"
    key.write_bytes(os.urandom(32).hex().encode())
    return IngestSettings(job_id_key_path=key)


@pytest.fixture
def harness(blobs: LocalBlobStore, settings: IngestSettings) -> StageHarness:
    return StageHarness(IngestStage(settings, blobs, JobLimits()))


def upload(blobs: LocalBlobStore, name: str, data: bytes, request_id: str = "r1") -> BlobRef:
    """A photo put where the request ``request_id`` of creator c1 may name it."""
    return blobs.put_bytes(upload_area("c1", request_id) + name, data, "image/jpeg")


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
    out = await harness.send(request(upload(blobs, "a", photo_bytes())))
    (job,) = out.jobs
    assert job.job_id == harness.stage.job_ids.for_request("c1", "r1")
    assert job.prompt == "waves at dusk" and job.photo_info.width == 160
    assert re.search(rf"/photos/{job.job_id}/photo-[0-9a-f]{{32}}\.png$", job.photo.uri)
    assert (job.output.width, job.output.fps, job.output.duration_ms) == (96, 24, 4000)
    assert out.statuses[0].state == INGEST.passed_state == JobState.ACCEPTED


def test_job_ids_are_keyed_per_creator_and_unguessable_without_the_key() -> None:
    ids, other_key = JobIds(b"k" * 32), JobIds(b"q" * 32)
    job_id = ids.for_request("c1", "r1")
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    assert ids.for_request("c1", "r1") == job_id  # idempotent
    assert ids.for_request("c2", "r1") != job_id  # a request id is scoped to its creator
    assert other_key.for_request("c1", "r1") != job_id
    with pytest.raises(ValueError, match="at least 32 bytes"):
        JobIds(b"short")


@pytest.mark.parametrize(
    ("key", "data", "code"),
    [
        ("elsewhere/a", photo_bytes(), ReasonCode.PHOTO_REF_NOT_OWN_UPLOAD),
        ("uploads/c1/other-request/a", photo_bytes(), ReasonCode.PHOTO_REF_NOT_OWN_UPLOAD),
        ("uploads/c2/r1/a", photo_bytes(), ReasonCode.PHOTO_REF_NOT_OWN_UPLOAD),
        ("uploads/c1/r1/b", b"not an image at all", ReasonCode.PHOTO_UNDECODABLE),
        ("uploads/c1/r1/c", b"", ReasonCode.PHOTO_EMPTY),
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
    missing = BlobRef(uri=(harness.stage.blobs.root / upload_area("c1", "r1") / "gone").as_uri())
    out = await harness.send(request(missing))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.PHOTO_NOT_FOUND]


async def test_a_photo_outside_the_store_is_rejected(harness: StageHarness, tmp_path: Path) -> None:
    elsewhere = BlobRef(uri=(tmp_path.parent / "elsewhere.jpg").as_uri())
    out = await harness.send(request(elsewhere))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.PHOTO_REF_OUTSIDE_STORE]


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
    photo = upload(blobs, "d", photo_bytes())
    out = await harness.send(request(photo, **fields), key=b"k")
    assert [d.reason_code for d in out.dead_letters] == [code] and not out.statuses


async def test_the_same_request_twice_makes_one_job(
    harness: StageHarness, blobs: LocalBlobStore
) -> None:
    photo = upload(blobs, "e", photo_bytes(), request_id="same")
    first = await harness.send(request(photo, request_id="same"))
    second = await harness.send(request(photo, request_id="same"))
    assert len(first.jobs) == 1 and not second.jobs and not second.statuses


async def test_a_photo_reference_the_store_refuses_is_rejected_with_why(
    harness: StageHarness, blobs: LocalBlobStore, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(photo_bytes())
    areas = {name: blobs.root / upload_area("c1", name) for name in ("link", "fifo", "sum")}
    for area in areas.values():
        area.mkdir(parents=True)
    (areas["link"] / "photo").symlink_to(outside)
    os.mkfifo(areas["fifo"] / "photo")
    stored = upload(blobs, "photo", photo_bytes(), request_id="sum")
    refs = {
        "link": (BlobRef(uri=(areas["link"] / "photo").as_uri()), "BLOB_NOT_REGULAR_FILE"),
        "fifo": (BlobRef(uri=(areas["fifo"] / "photo").as_uri()), "BLOB_NOT_REGULAR_FILE"),
        "sum": (BlobRef(uri=stored.uri, sha256="f" * 64), "BLOB_CHECKSUM_MISMATCH"),
    }
    for request_id, (ref, code) in refs.items():
        out = await harness.send(request(ref, request_id=request_id))
        assert list(out.statuses[0].reason_codes) == [code], request_id
        assert out.statuses[0].state == JobState.REJECTED


async def test_the_job_records_the_training_choice_signed_and_defaults_to_no(
    harness: StageHarness, blobs: LocalBlobStore
) -> None:
    asked = request(upload(blobs, "a", photo_bytes()))
    asked.training_use_consent = True
    (yes,) = (await harness.send(asked)).jobs
    (no,) = (await harness.send(request(upload(blobs, "b", photo_bytes(), "r2"), "r2"))).jobs
    assert yes.training_use_consent and not no.training_use_consent
    assert signed_scores(yes, "ingest")[TRAINING_CONSENT_SCORE] == 1.0
    assert signed_scores(no, "ingest")[TRAINING_CONSENT_SCORE] == 0.0


async def test_the_job_is_indexed_under_its_creator_and_its_prompt_kept_as_a_blob(
    harness: StageHarness, blobs: LocalBlobStore
) -> None:
    (job,) = (await harness.send(request(upload(blobs, "a", photo_bytes())))).jobs
    assert creator_job_ids(blobs, "c1") == [job.job_id]
    assert indexed_job(blobs, job.job_id) == ErasedJob(job.job_id, "c1", "r1")
    assert blobs.get_bytes(job.prompt_ref) == job.prompt.encode() == b"waves at dusk"
    assert job.prompt_ref.sha256 == hashlib.sha256(job.prompt.encode()).hexdigest()
    record = harness.ledger.get("ingest", job.job_id)
    assert record is not None and b"waves at dusk" not in record
