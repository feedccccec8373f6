"""Two replicas of one stage handed the same event at once, sharing one store (a local folder,
or a real S3 API: moto's server): one ledger record, one video referenced downstream, and both
replicas send the same events (alive/processing.py, "Decided, then sent").

The stage is the real audio stage (it makes a new video blob per run), run in process by the
stage harness. Each replica has its own store object over the same folder or bucket prefix,
as on separate hosts; their ledger writes wait for each other, so both have processed the job
and decided before either records, which is the race that matters.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from alive.blobs import BlobStore, LocalBlobStore, StoredBlob
from alive.s3_store import S3BlobStore
from alive.v1.events_pb2 import BlobRef, GenerationInfo, Job, JobState, OutputSpec, StageOutcome
from alive_tools.keys import StageKeys
from alive_tools.testing import StageHarness
from services.audio.settings import AudioSettings
from services.audio.stage import AudioStage
from tests.support import MotoS3, photo_bytes, write_clip

REPLICAS = 2


class Rendezvous(BlobStore):
    """A store that holds each ledger record's create until every replica has reached it."""

    def __init__(self, inner: BlobStore, meet: threading.Barrier) -> None:
        self.inner = inner
        self._meet = meet

    def create_key(self, key: str, data: bytes) -> bool:
        if key.startswith("ledger/audio/"):
            self._meet.wait()
        return self.inner.create_key(key, data)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> BlobRef:
        return self.inner.put_bytes(key, data, content_type)

    def put_file(self, key: str, path: Path, content_type: str) -> BlobRef:
        return self.inner.put_file(key, path, content_type)

    def get_bytes(self, ref: BlobRef) -> bytes:
        return self.inner.get_bytes(ref)

    def local_copy(self, ref: BlobRef) -> AbstractContextManager[Path]:
        return self.inner.local_copy(ref)

    def key_for(self, uri: str) -> str | None:
        return self.inner.key_for(uri)

    def read_key(self, key: str) -> bytes | None:
        return self.inner.read_key(key)

    def list_keys(self, prefix: str) -> Iterator[StoredBlob]:
        return self.inner.list_keys(prefix)

    def delete_key(self, key: str) -> bool:
        return self.inner.delete_key(key)

    def write_key(self, key: str, data: bytes) -> None:
        self.inner.write_key(key, data)


@dataclass
class SharedStore:
    """One store the replicas share: ``open`` gives a replica its own store object over it;
    ``keys_under`` lists what it holds under a prefix."""

    open: Callable[[], BlobStore]
    keys_under: Callable[[str], list[str]]


@pytest.fixture(params=["local", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> SharedStore:
    if request.param == "local":
        root = tmp_path / "shared"
        return SharedStore(
            lambda: LocalBlobStore(root),
            lambda prefix: [p.relative_to(root).as_posix() for p in (root / prefix).iterdir()],
        )
    s3: MotoS3 = request.getfixturevalue("s3")
    folder = f"replicas-{uuid.uuid4().hex[:8]}"
    client = s3.client()

    def keys_under(prefix: str) -> list[str]:
        listed = client.list_objects_v2(Bucket=s3.BUCKET, Prefix=f"{folder}/{prefix}/")
        return [o["Key"].removeprefix(f"{folder}/") for o in listed.get("Contents", ())]

    url = f"s3://{s3.BUCKET}/{folder}"
    return SharedStore(lambda: S3BlobStore(url, 64 * 1024 * 1024, client=s3.client()), keys_under)


async def test_two_replicas_racing_on_one_event_make_one_result(
    shared: SharedStore, tmp_path: Path
) -> None:
    meet = threading.Barrier(REPLICAS, timeout=60)
    stores = [Rendezvous(shared.open(), meet) for _ in range(REPLICAS)]
    keys = StageKeys()
    harnesses = [StageHarness(AudioStage(AudioSettings(), store), keys=keys) for store in stores]
    upstream = stores[0]
    write_clip(tmp_path / "silent.mp4", audio_length=None)
    job_id = f"race-{uuid.uuid4().hex[:8]}"
    job = harnesses[0].upstream(
        Job(
            job_id=job_id,
            prompt="rain on the sea",
            photo=upstream.put_bytes(f"photos/{job_id}.png", photo_bytes(fmt="PNG"), "image/png"),
            video=upstream.put_file(
                f"videos/{job_id}/generated.mp4", tmp_path / "silent.mp4", "video/mp4"
            ),
            output=OutputSpec(width=64, height=112, fps=12, duration_ms=1000),
            generation=GenerationInfo(frame_count=12),
        )
    )

    outs = await asyncio.gather(*(h.send(job) for h in harnesses))

    # Both replicas made a video, but one decision stands, and both sent exactly it.
    record = StageOutcome.FromString(harnesses[0].ledger.get("audio", job_id) or b"")
    assert record.status.state == JobState.SCORED
    for out in outs:
        assert [j.SerializeToString() for j in out.jobs] == [record.passed.SerializeToString()]
        assert out.statuses == [record.status]
        assert not (out.vetoes or out.dead_letters)
    assert harnesses[0].ledger.was_sent("audio", job_id)
    counts = [
        h.metrics.events_out.labels("audio", outcome)._value.get()
        for h in harnesses
        for outcome in ("passed", "resent")
    ]
    assert sorted(counts) == [0, 0, 1, 1]  # one replica passed it, the other sent that

    # Each replica made its own video; the one every event names is the record's, and the
    # other stays unreferenced.
    made = [k for k in shared.keys_under(f"videos/{job_id}") if "/scored-" in k]
    assert len(made) == REPLICAS
    assert upstream.key_for(record.passed.video.uri) in made

    # A redelivery to either replica is a duplicate now: nothing more is sent.
    for harness in harnesses:
        again = await harness.send(job)
        assert not (again.jobs or again.statuses)
