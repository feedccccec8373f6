"""Retention: how long a job's blobs are kept, and the sweeper that deletes them on time.

The rules (``RetentionSettings``):
- the **upload** of a request goes as soon as its job has a status past SUBMITTED (ingest
  has stored the cleaned photo, or rejected the request): only the cleaned photo is kept;
- the **sources** (the cleaned photo, the intermediate videos: generated, scored) go
  ``sources_after_settled_s`` after the job settles (READY, or a terminal state);
- a **video never published** goes ``unpublished_video_s`` after the job is READY (at once
  when the job ended otherwise: vetoed, failed, cancelled);
- a **published video** goes when it is unpublished (alive.unpublished); erasure
  (a creator's request) deletes it at once too, apart from this sweeper.
Ledger entries are not swept here (they are encrypted with the job's key, which erasure
destroys); uploads that never became a job go ``orphan_upload_s`` after they were written.

How it runs with many replicas (``RetentionSweeper``): the job events come from a Kafka
consumer group, so each job's events reach one replica, which records what is due as
small marker blobs (``retention/<job>/<rule>.<due ms>``); every replica sweeps the markers
that are due. Every step is idempotent (a marker written twice is one marker, a blob deleted
twice is deleted once), so replicas racing on one marker delete nothing twice, and a crash
between two steps is finished by the next sweep. A replica counts only the deletions that
removed a blob, so the metric summed over replicas counts each blob once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from google.protobuf.message import DecodeError
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel, Field

from alive.blobs import BlobError, BlobStore, StageLedger
from alive.jobs import PUBLISHED_VIDEO_STEP, SETTLED_STATES, upload_area, valid_id
from alive.kafka import BACKGROUND_FETCH_MAX_WAIT_MS, make_consumer
from alive.pipeline import STATUS, UNPUBLISHED
from alive.reasons import ReasonCode
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import JobState, StatusEvent, Unpublished

log = logging.getLogger(__name__)
_Event = TypeVar("_Event", StatusEvent, Unpublished)

MARKERS = "retention/"
CONSUMER_GROUP = "alive-retention"
# Rules a marker can name; "published" is a fact, not a rule: the job's video is live.
SOURCES, VIDEO, UNPUBLISHED_VIDEO, PUBLISHED = "sources", "video", "unpublished", "published"
# The states after which a request's upload is no longer needed: ingest has passed or
# rejected it (a settled job too, should those events have been missed).
_UPLOAD_SERVED = SETTLED_STATES | {JobState.ACCEPTED}
# What a deletion counts as (the metric's ``kind`` label).
KINDS = ("upload", "photo", "prompt", "intermediate", "video")


class RetentionSettings(BaseModel):
    # The cleaned photo, the prompt and intermediate videos, after the job is READY or has
    # ended.
    sources_after_settled_s: int = Field(default=3600, ge=0)
    # A video that is never published, after the job is READY.
    unpublished_video_s: int = Field(default=7 * 24 * 3600, ge=0)
    # An upload no job ever took up (never submitted, or its request lost).
    orphan_upload_s: int = Field(default=24 * 3600, ge=0)
    # How often each replica sweeps what is due.
    sweep_interval_s: float = Field(default=60.0, gt=0)


def kind_of(key: str) -> str | None:
    """The kind of blob ``key`` is, for retention and its metrics; None for other keys."""
    parts = key.split("/")
    if parts[0] == "uploads":
        return "upload"
    if parts[0] == "photos":
        return "photo"
    if parts[0] == "prompts":
        return "prompt"
    if parts[0] == "videos" and len(parts) >= 3:
        return "video" if parts[2].startswith(PUBLISHED_VIDEO_STEP) else "intermediate"
    return None


def job_blob_prefixes(job_id: str) -> tuple[str, str, str]:
    """Where a job's photo, prompt and videos lie (alive/jobs.py ``photo_prefix``,
    ``prompt_prefix``, ``video_prefix``)."""
    return (f"photos/{job_id}/", f"prompts/{job_id}/", f"videos/{job_id}/")


class RetentionMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deleted = Counter(
            "alive_retention_deleted_blobs",
            "Blobs the retention sweeper deleted, by kind (upload, photo, prompt, intermediate,"
            " video).",
            ["kind"],
            registry=registry,
        )
        for kind in KINDS:
            self.deleted.labels(kind)
        self.sweeps = Counter(
            "alive_retention_sweeps",
            "Retention sweeps run, by outcome.",
            ["outcome"],
            registry=registry,
        )


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class _Marker:
    key: str
    job_id: str
    rule: str
    due_at_ms: int

    @classmethod
    def parse(cls, key: str) -> _Marker | None:
        parts = key.removeprefix(MARKERS).split("/")
        if len(parts) != 2 or not valid_id(parts[0]):
            return None
        rule, _, due = parts[1].partition(".")
        if rule not in (SOURCES, VIDEO, UNPUBLISHED_VIDEO) or not due.isdigit():
            return None
        return cls(key, parts[0], rule, int(due))


class RetentionSweeper:
    """Records what is due from job events (``on_status``, ``on_unpublished``) and deletes it
    when due (``sweep``). ``clock`` gives the time in ms (tests move it)."""

    def __init__(
        self,
        store: BlobStore,
        settings: RetentionSettings,
        metrics: RetentionMetrics,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.store = store
        self._ledger = StageLedger(store)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock

    # What job events make due

    def on_status(self, event: StatusEvent) -> None:
        job_id = event.job_id
        if not valid_id(job_id) or event.state not in _UPLOAD_SERVED:
            return
        if valid_id(event.creator_id) and valid_id(event.request_id):
            # The request's upload has served: ingest stored the cleaned photo or said no.
            self._delete_all([upload_area(event.creator_id, event.request_id)])
        if event.state not in SETTLED_STATES:
            return
        now = self.clock()
        sources_due = now + self.settings.sources_after_settled_s * 1000
        if event.state == JobState.PUBLISHED:
            self._mark(job_id, PUBLISHED)  # first, so a sweep from now on keeps the video
            for marker in self._markers(f"{MARKERS}{job_id}/"):
                if marker.rule == VIDEO:
                    self.store.delete_key(marker.key)
        elif event.state == JobState.READY:
            self._mark(job_id, f"{VIDEO}.{now + self.settings.unpublished_video_s * 1000}")
        else:  # ended without a video anyone may see
            self._mark(job_id, f"{VIDEO}.{sources_due}")
        self._mark(job_id, f"{SOURCES}.{sources_due}")

    def on_unpublished(self, event: Unpublished) -> None:
        if valid_id(event.job_id):
            self._mark(event.job_id, f"{UNPUBLISHED_VIDEO}.{self.clock()}")

    def _mark(self, job_id: str, name: str) -> None:
        """A marker, once: a second event of the job (a redelivery, another READY) keeps the
        first marker of a rule and so its first due time. None for an erased job: its events
        can still arrive (one in flight, or replayed) and must not name it again."""
        if self._ledger.is_erased(job_id):
            return
        rule = name.partition(".")[0]
        if rule != PUBLISHED and any(m.rule == rule for m in self._markers(f"{MARKERS}{job_id}/")):
            return
        key = f"{MARKERS}{job_id}/{name}"
        try:
            self.store.put_bytes(key, b"", "text/plain")
        except BlobError as exc:
            if exc.reason_code != ReasonCode.BLOB_EXISTS:
                raise
        # An erasure marks the job, then deletes its markers: a marker written while it ran
        # (the job's event and its erasure at once) sees the mark here, and goes too.
        if self._ledger.is_erased(job_id):
            self.store.delete_key(key)

    # Deleting what is due

    def sweep(self) -> int:
        """Carries out every marker that is due; how many blobs this call deleted."""
        now, deleted = self.clock(), 0
        orphan_before = now - self.settings.orphan_upload_s * 1000
        for blob in list(self.store.list_keys("uploads/")):
            if blob.modified_at_ms <= orphan_before:
                deleted += self._delete(blob.key)
        for marker in self._markers(MARKERS):
            if marker.due_at_ms <= now:
                deleted += self._carry_out(marker)
        return deleted

    def _carry_out(self, marker: _Marker) -> int:
        photos, prompts, videos = job_blob_prefixes(marker.job_id)
        deleted = 0
        if marker.rule == SOURCES:
            deleted += self._delete_all([photos, prompts])
            deleted += self._delete_all([videos], keep=lambda k: kind_of(k) == "video")
        elif marker.rule == VIDEO:
            published = f"{MARKERS}{marker.job_id}/{PUBLISHED}"
            if self.store.read_key(published) is None:
                deleted += self._delete_all([videos])
        else:  # unpublished: the video goes, live or not
            deleted += self._delete_all([videos])
            self.store.delete_key(f"{MARKERS}{marker.job_id}/{PUBLISHED}")
        self.store.delete_key(marker.key)  # last: a crash before it sweeps again
        return deleted

    def _delete_all(
        self, prefixes: Iterable[str], keep: Callable[[str], bool] | None = None
    ) -> int:
        deleted = 0
        for prefix in prefixes:
            for blob in list(self.store.list_keys(prefix)):
                if keep is None or not keep(blob.key):
                    deleted += self._delete(blob.key)
        return deleted

    def _delete(self, key: str) -> int:
        if not self.store.delete_key(key):
            return 0  # another replica was first
        self.metrics.deleted.labels(kind_of(key) or "other").inc()
        return 1

    def _markers(self, prefix: str) -> list[_Marker]:
        found = (_Marker.parse(b.key) for b in self.store.list_keys(prefix))
        return [m for m in found if m is not None]


class RetentionService:
    """The sweeper as a component of a service (``alive.service.Component``): follows the
    status and unpublished topics in the ``alive.retention`` consumer group, and sweeps every
    ``sweep_interval_s``."""

    def __init__(self, common: ServiceSettings, sweeper: RetentionSweeper, client_id: str):
        self._common = common
        self._sweeper = sweeper
        self._consumer: AIOKafkaConsumer = make_consumer(
            common, CONSUMER_GROUP, client_id, fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.subscribe([self._common.topic(STATUS), self._common.topic(UNPUBLISHED)])
        self._tasks = [
            asyncio.create_task(self._follow()),
            asyncio.create_task(self._sweep_periodically()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._consumer.stop()

    async def _follow(self) -> None:
        try:
            await self._follow_records()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("retention stopped following the job events")
            raise

    async def _follow_records(self) -> None:
        status, unpublished = self._common.topic(STATUS), self._common.topic(UNPUBLISHED)
        while True:
            batch = await self._consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        if record.topic == status:
                            event = StatusEvent.FromString(record.value or b"")
                            await self._apply(self._sweeper.on_status, event)
                        elif record.topic == unpublished:
                            gone = Unpublished.FromString(record.value or b"")
                            await self._apply(self._sweeper.on_unpublished, gone)
                    except DecodeError:  # a record no one can read: skipped, and said so
                        log.warning("undecodable record", extra={"topic": record.topic})
            if batch:
                await self._consumer.commit()

    async def _apply(self, handler: Callable[[_Event], None], event: _Event) -> None:
        """Applies the event, retrying while the store is unavailable: committed only once
        applied, an event is never lost."""
        delay = 0.5
        while True:
            try:
                await asyncio.to_thread(handler, event)
                return
            except OSError:
                log.warning("retention store unavailable; retrying", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _sweep_periodically(self) -> None:
        while True:
            try:
                deleted = await asyncio.to_thread(self._sweeper.sweep)
                self._sweeper.metrics.sweeps.labels("ok").inc()
                if deleted:
                    log.info("retention sweep", extra={"deleted": deleted})
            except Exception:
                self._sweeper.metrics.sweeps.labels("error").inc()
                log.exception("retention sweep failed")
            await asyncio.sleep(self._sweeper.settings.sweep_interval_s)
