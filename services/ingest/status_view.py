"""Every job's state, read from alive.status: what the gRPC Get and Watch serve.

It reads the whole topic from the beginning at start (so it survives a restart of ingest)
and follows it after. It is ready once it has caught up with the end offsets it saw at
start. Repeated transitions (at-least-once delivery) are shown once. Progress reports (a
stage's long work, e.g. denoising steps) go to watchers and set the job's latest progress;
they are not transitions and not kept in its history. A tombstone (a record with no value)
keyed by a job erases it from the view (alive/erasure.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition

from alive.jobs import SETTLED_STATES, is_terminal
from alive.kafka import make_consumer
from alive.pipeline import STATUS
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import StatusEvent

log = logging.getLogger(__name__)


class StatusView:
    def __init__(self, settings: ServiceSettings) -> None:
        self._settings = settings
        self._jobs: dict[str, JobView] = {}
        # Jobs still on their way to READY or an end, per creator: what the API's caps count.
        self._unsettled: dict[str, set[str]] = {}
        self._watchers: dict[str, set[asyncio.Queue[StatusEvent]]] = {}
        # Erased jobs: a late event of one (sent before its erasure, read after) is ignored.
        self._erased: set[str] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._caught_up.is_set()

    async def start(self) -> None:
        topic = self._settings.topic(STATUS)
        consumer = make_consumer(self._settings, group_id=None, client_id="ingest-status-view")
        await consumer.start()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._follow(consumer, end))
        await asyncio.wait_for(self._caught_up.wait(), timeout=60)
        log.info("status view caught up", extra={"jobs": len(self._jobs)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> None:
        while True:
            if not self._caught_up.is_set() and all(
                [await consumer.position(tp) >= off for tp, off in end.items()]
            ):
                self._caught_up.set()
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if record.value is None:  # an erased job's tombstone
                        self.forget((record.key or b"").decode(errors="replace"))
                        continue
                    try:
                        event = StatusEvent.FromString(record.value or b"")
                    except Exception:
                        log.warning("undecodable status event", extra={"offset": record.offset})
                        continue
                    self.apply(event)

    def apply(self, event: StatusEvent) -> None:
        if event.job_id in self._erased:
            return
        view = self._jobs.get(event.job_id)
        if view is None:
            view = JobView(
                job_id=event.job_id, request_id=event.request_id, creator_id=event.creator_id
            )
            self._jobs[event.job_id] = view
        if event.HasField("progress"):
            self._progress(view, event)
            return
        if any(h.state == event.state and h.stage == event.stage for h in view.history):
            return  # a redelivered transition
        view.history.append(event)
        view.ClearField("progress")  # the stage that reported it is done
        if not view.terminal:
            view.state = event.state
            view.terminal = is_terminal(event.state)
            del view.reason_codes[:]
            view.reason_codes.extend(event.reason_codes)
        self._count(view)
        if event.HasField("video"):
            view.video.CopyFrom(event.video)
        for queue in self._watchers.get(event.job_id, ()):
            queue.put_nowait(event)

    def _progress(self, view: JobView, report: StatusEvent) -> None:
        """A progress report: the job's latest, shown to watchers; not a transition. One
        from a stage the job has already passed (a late or redelivered report) is ignored."""
        if view.terminal or any(h.stage == report.stage for h in view.history):
            return
        view.progress.CopyFrom(report.progress)
        for queue in self._watchers.get(report.job_id, ()):
            queue.put_nowait(report)

    def _count(self, view: JobView) -> None:
        jobs = self._unsettled.setdefault(view.creator_id, set())
        if view.state in SETTLED_STATES:
            jobs.discard(view.job_id)
            if not jobs:
                del self._unsettled[view.creator_id]
        else:
            jobs.add(view.job_id)

    def forget(self, job_id: str) -> None:
        """Drops an erased job: it is unknown from now on."""
        self._erased.add(job_id)
        view = self._jobs.pop(job_id, None)
        if view is not None:
            jobs = self._unsettled.get(view.creator_id, set())
            jobs.discard(job_id)
            if not jobs:
                self._unsettled.pop(view.creator_id, None)

    def jobs_of(self, creator_id: str) -> list[JobView]:
        """The creator's jobs the view knows."""
        return [
            JobView.FromString(v.SerializeToString())
            for v in self._jobs.values()
            if v.creator_id == creator_id
        ]

    def in_flight(self, creator_id: str | None = None) -> int:
        """Jobs not yet READY or ended: the creator's, or everyone's."""
        if creator_id is not None:
            return len(self._unsettled.get(creator_id, ()))
        return sum(map(len, self._unsettled.values()))

    def get(self, job_id: str) -> JobView | None:
        view = self._jobs.get(job_id)
        return JobView.FromString(view.SerializeToString()) if view else None

    async def watch(self, job_id: str) -> AsyncIterator[StatusEvent]:
        """The job's transitions so far, then each new one as it arrives."""
        queue: asyncio.Queue[StatusEvent] = asyncio.Queue()
        watchers = self._watchers.setdefault(job_id, set())
        watchers.add(queue)
        try:
            view = self._jobs.get(job_id)
            seen = list(view.history) if view else []
            for event in seen:
                yield event
            while True:
                event = await queue.get()
                if event not in seen:
                    yield event
        finally:
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(job_id, None)
