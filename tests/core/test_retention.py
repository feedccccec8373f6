"""Retention (alive/retention.py): each kind of blob is deleted on schedule, by a clock the
test moves, with the deletions counted by kind; two sweepers (two replicas) over one store
delete each blob once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from alive.blobs import BlobRef, LocalBlobStore, StageLedger
from alive.encryption import EncryptingBlobStore, KekRing, new_keyring_document
from alive.kafka import ensure_topics
from alive.pipeline import STATUS, UNPUBLISHED
from alive.retention import (
    RetentionMetrics,
    RetentionService,
    RetentionSettings,
    RetentionSweeper,
)
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import JobState, StatusEvent, Unpublished
from alive_tools.embedded.broker import EmbeddedBroker
from tests.support import produce

HOUR_MS, DAY_MS = 3_600_000, 86_400_000
SETTINGS = RetentionSettings(
    sources_after_settled_s=3600, unpublished_video_s=7 * 86400, orphan_upload_s=86400
)


class Clock:
    def __init__(self) -> None:
        self.ms = 1_800_000_000_000

    def __call__(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms


@pytest.fixture
def store(tmp_path: Path) -> EncryptingBlobStore:
    keys = KekRing.from_document(new_keyring_document("k1"))
    return EncryptingBlobStore(LocalBlobStore(tmp_path / "blobs"), keys)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def sweeper(store: EncryptingBlobStore, clock: Clock) -> tuple[RetentionSweeper, CollectorRegistry]:
    registry = CollectorRegistry()
    return RetentionSweeper(store, SETTINGS, RetentionMetrics(registry), clock), registry


def deleted(registry: CollectorRegistry, kind: str) -> float:
    value = registry.get_sample_value("alive_retention_deleted_blobs_total", {"kind": kind})
    return value or 0.0


def a_job(store: EncryptingBlobStore, job: str) -> None:
    """A job's blobs as the stages write them."""
    store.put_bytes(f"uploads/creator/{job}-request/photo-1.png", b"upload", "image/png")
    store.put_bytes(f"photos/{job}/photo-1.png", b"photo", "image/png")
    for step in ("generated", "scored", "signed"):
        store.put_bytes(f"videos/{job}/{step}-1.mp4", step.encode(), "video/mp4")
    store.write_key(f"ledger/generator/{job}", b"record")


def status(job: str, state: JobState.ValueType) -> StatusEvent:
    return StatusEvent(job_id=job, creator_id="creator", request_id=f"{job}-request", state=state)


def keys(store: EncryptingBlobStore, job: str) -> set[str]:
    """The job's upload and media still stored."""
    prefixes = (f"uploads/creator/{job}-request/", f"photos/{job}/", f"videos/{job}/")
    return {b.key for prefix in prefixes for b in store.list_keys(prefix)}


def test_an_unpublished_job_loses_its_upload_then_sources_then_video(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    retention, registry = sweeper(store, clock)
    a_job(store, "j1")
    retention.on_status(status("j1", JobState.SUBMITTED))
    assert "uploads/creator/j1-request/photo-1.png" in keys(store, "j1")
    retention.on_status(status("j1", JobState.ACCEPTED))  # the cleaned photo is stored
    assert "uploads/creator/j1-request/photo-1.png" not in keys(store, "j1")
    assert deleted(registry, "upload") == 1

    retention.on_status(status("j1", JobState.READY))
    clock.advance(HOUR_MS - 1)
    assert retention.sweep() == 0
    clock.advance(1)
    assert retention.sweep() == 3  # the photo and two intermediate videos
    assert keys(store, "j1") == {"videos/j1/signed-1.mp4"}
    assert (deleted(registry, "photo"), deleted(registry, "intermediate")) == (1, 2)

    retention.on_status(status("j1", JobState.READY))  # a redelivery does not push it back
    clock.advance(7 * DAY_MS - HOUR_MS - 1)
    assert retention.sweep() == 0
    clock.advance(1)
    assert retention.sweep() == 1
    assert keys(store, "j1") == set() and deleted(registry, "video") == 1
    assert store.read_key("ledger/generator/j1") == b"record"  # the ledger is not swept
    assert not list(store.list_keys("retention/"))  # every marker carried out


def test_a_published_video_stays_until_it_is_unpublished(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    retention, registry = sweeper(store, clock)
    a_job(store, "j2")
    retention.on_status(status("j2", JobState.READY))
    clock.advance(DAY_MS)
    retention.on_status(status("j2", JobState.PUBLISHED))
    clock.advance(30 * DAY_MS)
    retention.sweep()
    assert keys(store, "j2") == {"videos/j2/signed-1.mp4"}
    retention.on_unpublished(Unpublished(job_id="j2"))
    assert retention.sweep() == 1
    assert keys(store, "j2") == set() and deleted(registry, "video") == 1


def test_a_job_that_ended_without_a_video_loses_everything_after_the_short_delay(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    retention, _ = sweeper(store, clock)
    a_job(store, "j3")
    retention.on_status(status("j3", JobState.VETOED))
    assert "uploads/creator/j3-request/photo-1.png" not in keys(store, "j3")
    clock.advance(HOUR_MS)
    assert retention.sweep() == 4
    assert keys(store, "j3") == set()


def test_an_upload_no_job_took_up_goes_after_its_own_delay(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    retention, registry = sweeper(store, clock)
    store.put_bytes("uploads/c/never-submitted/photo-1.png", b"x", "image/png")
    clock.ms = next(store.list_keys("uploads/")).modified_at_ms
    clock.advance(DAY_MS - 10_000)
    assert retention.sweep() == 0
    clock.advance(20_000)
    assert retention.sweep() == 1 and deleted(registry, "upload") == 1


def test_events_of_an_erased_job_leave_no_marker_behind(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    """A job's status events can reach retention after its erasure deleted its markers (the
    READY event the creator saw, still in flight): they must not write the job's id again."""
    retention, _ = sweeper(store, clock)
    retention.on_status(status("j4", JobState.READY))
    assert list(store.list_keys("retention/j4/"))  # the check below can fail
    StageLedger(store).mark_erased("j4", b"erased")
    for marker in list(store.list_keys("retention/j4/")):
        store.delete_key(marker.key)  # what the erasure does next
    retention.on_status(status("j4", JobState.READY))
    retention.on_status(status("j4", JobState.PUBLISHED))
    retention.on_unpublished(Unpublished(job_id="j4"))
    assert list(store.list_keys("retention/j4/")) == []


def test_a_marker_written_while_its_job_is_erased_goes_too(
    store: EncryptingBlobStore, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event and the erasure at once: the erasure marks the job after the sweeper looked
    and deletes the markers before the sweeper's is written."""
    retention, _ = sweeper(store, clock)
    put_bytes = store.put_bytes

    def erased_just_before(key: str, data: bytes, content_type: str) -> BlobRef:
        if key.startswith("retention/j5/"):
            StageLedger(store).mark_erased("j5", b"erased")
        return put_bytes(key, data, content_type)

    monkeypatch.setattr(store, "put_bytes", erased_just_before)
    retention.on_status(status("j5", JobState.READY))
    assert list(store.list_keys("retention/j5/")) == []


def test_two_replicas_sweeping_one_store_delete_each_blob_once(
    store: EncryptingBlobStore, clock: Clock
) -> None:
    first, first_registry = sweeper(store, clock)
    second, second_registry = sweeper(store, clock)
    for job in ("a", "b", "c"):
        a_job(store, job)
        first.on_status(status(job, JobState.FAILED))
    clock.advance(HOUR_MS)
    with ThreadPoolExecutor(max_workers=2) as pool:
        total = sum(pool.map(lambda replica: replica.sweep(), (first, second)))
    assert total == 3 * 4
    kinds = ("photo", "intermediate", "video")
    both = sum(deleted(r, k) for r in (first_registry, second_registry) for k in kinds)
    assert both == 12


async def eventually(condition: Callable[[], bool], timeout_s: float = 30) -> None:
    for _ in range(int(timeout_s * 10)):
        if condition():
            return
        await asyncio.sleep(0.1)


async def test_the_service_follows_the_topics_and_sweeps(
    broker: EmbeddedBroker, store: EncryptingBlobStore, clock: Clock
) -> None:
    """The sweeper as the review service runs it: events from Kafka (its own consumer group),
    sweeps on a timer."""
    run = uuid.uuid4().hex[:8]

    def counted() -> float:
        return sum(deleted(registry, k) for k in ("upload", "photo", "intermediate", "video"))

    common = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        topics={t.key: f"{run}.{t.default_name}" for t in (STATUS, UNPUBLISHED)},
    )
    await ensure_topics(common)
    registry = CollectorRegistry()
    settings = SETTINGS.model_copy(update={"sweep_interval_s": 0.1})
    sweeper = RetentionSweeper(store, settings, RetentionMetrics(registry), clock)
    service = RetentionService(common, sweeper, client_id="retention-test")
    a_job(store, "k1")
    await service.start()
    try:
        for state in (JobState.ACCEPTED, JobState.FAILED):
            await asyncio.to_thread(
                produce,
                broker.bootstrap_servers,
                common.topic(STATUS),
                status("k1", state).SerializeToString(),
                b"k1",
            )
        # the events applied: the upload gone, the video and sources markers written
        await eventually(lambda: len(list(store.list_keys("retention/k1/"))) == 2)
        assert "uploads/creator/k1-request/photo-1.png" not in keys(store, "k1")
        assert sweeper.sweep() == 0  # nothing due yet
        clock.advance(HOUR_MS)
        # The sweeper counts a blob just after deleting it: wait for the counts as well.
        await eventually(lambda: not keys(store, "k1") and counted() >= 5)
    finally:
        await service.stop()
    assert keys(store, "k1") == set()
    assert counted() == 5
