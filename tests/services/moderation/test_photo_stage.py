"""The photo checkpoint alone."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alive.blobs import LocalBlobStore
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import Job, JobState
from alive_tools.testing import StageHarness
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint
from tests.support import photo_bytes


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def blobs(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path)


async def check(blobs: LocalBlobStore, data: bytes, **settings: float) -> tuple[Job, StageHarness]:
    harness = StageHarness(PhotoCheckpoint(PhotoCheckpointSettings(**settings), blobs))
    job = Job(job_id="p1", photo=blobs.put_bytes("photos/p1.png", data, "image/png"))
    return job, harness


async def test_a_photo_passes_with_its_spread_recorded(blobs: LocalBlobStore) -> None:
    job, harness = await check(blobs, photo_bytes())
    out = await harness.send(job)
    assert out.statuses[0].state == JobState.PHOTO_CLEARED
    assert out.jobs[0].stages[-1].scores["pixel_stddev"] > 4


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (png(np.full((80, 80, 3), 128)), ReasonCode.PHOTO_BLANK),
        (png(np.random.default_rng(0).integers(0, 255, (32, 80, 3))), ReasonCode.PHOTO_TOO_SMALL),
        (b"\x89PNG broken", ReasonCode.PHOTO_UNDECODABLE),
    ],
)
async def test_unusable_photos_are_vetoed(
    blobs: LocalBlobStore, data: bytes, code: ReasonCode
) -> None:
    job, harness = await check(blobs, data)
    out = await harness.send(job)
    assert list(out.vetoes[0].reason_codes) == [code]
    assert out.statuses[0].state == JobState.VETOED


async def test_the_blank_veto_carries_the_spread(blobs: LocalBlobStore) -> None:
    job, harness = await check(blobs, png(np.full((80, 80, 3), 9)), blank_photo_stddev=4.0)
    out = await harness.send(job)
    assert out.vetoes[0].scores["pixel_stddev"] == 0.0
