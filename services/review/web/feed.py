"""Reads the review topics into a ReviewQueue: from the beginning at start (the queue is
rebuilt, nothing lost), then follows them. Like ingest's status view it assigns every
partition instead of joining a group, so every replica sees every record. A tombstone (a
record with no value) keyed by a job drops everything about the job from the queue."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from alive.kafka import BACKGROUND_FETCH_MAX_WAIT_MS, make_consumer
from alive.pipeline import (
    PUBLISHED,
    REPORTS,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    UNPUBLISHED,
    Topic,
)
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import (
    PublishedVideo,
    ReviewDecision,
    ReviewItem,
    Unpublished,
    UserReport,
)
from services.review.web.queue import ReviewQueue

log = logging.getLogger(__name__)
FEED_TOPICS: tuple[Topic[Any], ...] = (
    REVIEW_QUEUE,
    REVIEW_DECISIONS,
    REPORTS,
    PUBLISHED,
    UNPUBLISHED,
)


class ReviewFeed:
    """``on_report`` runs after a live report (not during the replay at start: then
    ``on_caught_up`` runs once, when every record that existed at start is applied)."""

    def __init__(
        self,
        settings: ServiceSettings,
        queue: ReviewQueue,
        on_report: Callable[[str], Awaitable[None]],
        on_caught_up: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._on_report = on_report
        self._on_caught_up = on_caught_up
        self._topics = {settings.topic(t): t for t in FEED_TOPICS}
        self._task: asyncio.Task[None] | None = None
        self.caught_up = asyncio.Event()

    async def start(self) -> None:
        consumer = make_consumer(
            self._settings, None, "review-web", fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS
        )
        await consumer.start()
        partitions = [
            TopicPartition(name, p)
            for name in self._topics
            for p in consumer.partitions_for_topic(name) or ()
        ]
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"the review topics do not exist: {sorted(self._topics)}")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        self._task = asyncio.create_task(self._follow(consumer, end))
        caught_up = asyncio.create_task(self.caught_up.wait())
        await asyncio.wait({self._task, caught_up}, timeout=60, return_when="FIRST_COMPLETED")
        caught_up.cancel()
        if self._task.done():
            self._task.result()  # raises why the feed stopped
        if not self.caught_up.is_set():
            raise TimeoutError("the review topics were not read to their end in 60 s")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def healthy(self) -> bool:
        """Caught up, and still following (readiness fails once the feed has stopped)."""
        return self.caught_up.is_set() and self._task is not None and not self._task.done()

    async def _follow(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> None:
        try:
            await self._follow_records(consumer, end)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the review feed stopped")
            raise
        finally:
            await consumer.stop()

    async def _follow_records(
        self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]
    ) -> None:
        while True:
            if not self.caught_up.is_set() and await _reached(consumer, end):
                await self._on_caught_up()
                self.caught_up.set()
                log.info("review queue rebuilt", extra={"open": len(self._queue.open_items())})
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    await self._apply(record)

    async def _apply(self, record: ConsumerRecord[bytes, bytes]) -> None:
        topic = self._topics[record.topic]
        if record.value is None:  # a tombstone: the job keyed was erased (alive/erasure.py)
            self._queue.forget_job((record.key or b"").decode(errors="replace"))
            return
        try:
            message = topic.message.FromString(record.value or b"") if topic.message else None
        except Exception:  # a record no one can read: skipped, and said so
            log.warning("undecodable record", extra={"topic": record.topic})
            return
        if isinstance(message, ReviewItem):
            self._queue.add_item(message)
        elif isinstance(message, ReviewDecision):
            self._queue.add_decision(message)
        elif isinstance(message, Unpublished):
            self._queue.add_unpublished(message)
        elif isinstance(message, PublishedVideo):
            self._queue.add_published(message)
        elif isinstance(message, UserReport):
            self._queue.add_report(message)
            if self.caught_up.is_set():
                await self._on_report(message.job_id)


async def _reached(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return False
    return True
