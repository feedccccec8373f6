"""Each job's latest state on alive.jobs: how a status event changes it (``fold``), and the
folder that writes it.

alive.jobs is compacted and keyed by job id: Kafka keeps the last JobView of every job,
however old, so Get and Submit's idempotency know a job long after its status events have
expired, and a reader starting up reads one record per job instead of every transition.

One writer per job: ingest replicas share the consumer group ``alive-ingest-jobs`` on
alive.status, so each status partition (and with it every event of its jobs, keyed by job
id) is folded by one replica at a time, in order. For each event that changes the job the
folder produces the new JobView, headed by the event's status offset (``STATUS_OFFSET``,
so that a reader can tell a newer view from an older one), and commits once Kafka has them
all: a crash refolds from the last commit, and refolding is a no-op (``fold`` drops a
transition the view already has). What the folder knows of a job comes from its own bounded
cache, else from alive.jobs itself (``JobStateLookup``), so a restart or a rebalance needs
no replay of alive.status. The cache forgets the jobs of partitions taken away: when they
come back, another replica may have folded their events meanwhile.

A tombstone (null value) under a job id erases the job: the status view forgets it and the
folder folds no later event into it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import Any, Final, Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError
from aiokafka.partitioner import murmur2

from alive.jobs import is_terminal
from alive.kafka import BACKGROUND_FETCH_MAX_WAIT_MS, make_consumer
from alive.pipeline import JOBS, PIPELINE, STATUS
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, StatusEvent
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

# On every alive.jobs record: the alive.status offset of the event it folds in, decimal.
STATUS_OFFSET = "alive-status-offset"
FOLDER_GROUP = "alive-ingest-jobs"
# How long a handover waits for the views already sent to land (they take milliseconds; a
# broker that does not answer holds the group's rebalance no longer than this).
HANDOVER_WAIT_S = 30.0


class _Erased(Enum):
    ERASED = "erased"


# What a lookup finds for a job erased with a tombstone (None: a job never seen).
ERASED: Final = _Erased.ERASED
Found = JobView | Literal[_Erased.ERASED] | None


def fold(view: JobView | None, event: StatusEvent) -> JobView | None:
    """The job's view once ``event`` is in it, a new message; None when the event changes
    nothing: a transition the view already has (at-least-once delivery), or a progress
    report from a stage the job has passed. Progress is the job's latest, not a transition,
    and is cleared by the next transition. A terminal state sticks, and so does a state
    later on the pipeline's way than the event's (an event that came late)."""
    new = JobView()
    if view is None:
        new.job_id, new.request_id, new.creator_id = (
            event.job_id,
            event.request_id,
            event.creator_id,
        )
    else:
        new.CopyFrom(view)
    if event.HasField("progress"):
        if new.terminal or any(h.stage == event.stage for h in new.history):
            return None
        if new.HasField("progress") and new.progress == event.progress:
            return None
        new.progress.CopyFrom(event.progress)
        return new
    if any(h.state == event.state and h.stage == event.stage for h in new.history):
        return None
    new.history.append(event)
    if _behind(event.state, new.state):
        return new  # it came late (a stage's status and output go out side by side)
    new.ClearField("progress")  # the stage that reported it is done
    if not new.terminal:
        new.state = event.state
        new.terminal = is_terminal(event.state)
        del new.reason_codes[:]
        new.reason_codes.extend(event.reason_codes)
    if event.HasField("video"):
        new.video.CopyFrom(event.video)
    return new


# The states of a job's way through the pipeline, in order (the terminal ones are off it).
_WAY = PIPELINE.steps_to(PIPELINE.stages[-1].passed_state)


def _behind(state: JobState.ValueType, current: JobState.ValueType) -> bool:
    """Whether ``state`` comes before ``current`` on the way."""
    return state in _WAY and current in _WAY and _WAY.index(state) < _WAY.index(current)


def status_offset(headers: Sequence[tuple[str, bytes]] | None) -> int:
    """The STATUS_OFFSET header of an alive.jobs record (-1 without one)."""
    for key, value in headers or ():
        if key == STATUS_OFFSET:
            return int(value)
    return -1


def _older(record: Any, than: Any) -> bool:
    """Whether alive.jobs ``record`` folds an earlier status event than ``than`` (both views;
    a tombstone is never older, nothing is older than a tombstone)."""
    if than is None or record.value is None or than.value is None:
        return False
    return status_offset(record.headers) < status_offset(than.headers)


def partition_of(job_id: str, partitions: int) -> int:
    """The partition a keyed record lands on: the default partitioner of Kafka clients
    (murmur2 of the key), so a lookup reads the one partition that holds the job."""
    hashed: int = murmur2(job_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


class JobStateLookup:
    """Finds one job's latest record on alive.jobs by reading the one partition its key
    maps to, up to that partition's end: as long as the partition holds jobs (compacted: about
    one record each), never the history of transitions. The slow path, behind a cache; one
    lookup at a time, each with a time limit."""

    def __init__(self, settings: ServiceSettings, own: IngestSettings, client_id: str) -> None:
        self._settings = settings
        self._timeout_s = own.job_lookup_timeout_s
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self.count = 0

    async def start(self) -> None:
        consumer = make_consumer(self._settings, group_id=None, client_id=self._client_id)
        await consumer.start()
        self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def find(self, job_id: str) -> tuple[Found, int]:
        """The job's latest view (or ERASED, or None) and its status offset. Raises
        TimeoutError when the partition cannot be read in time."""
        if self._consumer is None:
            return None, -1
        async with self._lock:
            self.count += 1
            return await asyncio.wait_for(self._scan(self._consumer, job_id), self._timeout_s)

    async def _scan(self, consumer: AIOKafkaConsumer, job_id: str) -> tuple[Found, int]:
        topic = self._settings.topic(JOBS)
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer.topics()  # a metadata refresh: the topic was not known yet
            partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist")
        tp = TopicPartition(topic, partition_of(job_id, len(partitions)))
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        key, last = job_id.encode(), None
        # Records past ``end`` (written since) count too: newer is better. (The embedded
        # broker reports a batch's end as its first offset + 1; a fetch returns the batch.)
        # A view folded from an older status event than the one before it (a replica that
        # lost its partitions writing late) does not replace it.
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            for record in batch.get(tp, ()):
                if record.key == key and not _older(record, last):
                    last = record
        if last is None:
            return None, -1
        if last.value is None:
            return ERASED, -1
        return JobView.FromString(last.value), status_offset(last.headers)


class JobStateFolder:
    """Folds alive.status into alive.jobs, for the status partitions this replica is given
    (group ``alive-ingest-jobs``). Remembers up to ``job_cache_size`` jobs; for another, it
    asks ``lookup``."""

    def __init__(
        self,
        settings: ServiceSettings,
        own: IngestSettings,
        producer: AIOKafkaProducer,
        lookup: JobStateLookup,
        may_exist: Callable[[str], bool],
        caught_up: Callable[[], Awaitable[None]],
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._lookup = lookup
        self._may_exist = may_exist
        self._caught_up = caught_up
        self._size = own.job_cache_size
        # Job id: (the status partition its events come on, its view). None for an erased
        # job, remembered whoever folds it (an erasure never goes stale).
        self._known: OrderedDict[str, tuple[int | None, JobView | Literal[_Erased.ERASED]]] = (
            OrderedDict()
        )
        self._handovers = 0  # how many times partitions were taken away
        self._landed = asyncio.Event()  # no batch's views are on their way to Kafka
        self._landed.set()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = make_consumer(
            self._settings,
            FOLDER_GROUP,
            "ingest-job-folder",
            fetch_max_wait_ms=BACKGROUND_FETCH_MAX_WAIT_MS,
        )
        await consumer.start()
        listener = _TakeOver(self._caught_up, self.hand_over)
        consumer.subscribe([self._settings.topic(STATUS)], listener=listener)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def partitions(self) -> frozenset[int]:
        """The status partitions this replica folds now."""
        if self._consumer is None:
            return frozenset()
        return frozenset(tp.partition for tp in self._consumer.assignment())

    def forget(self, job_id: str) -> None:
        """The job was erased (a tombstone on alive.jobs): fold nothing more into it."""
        self._remember(job_id, None, ERASED)

    async def hand_over(self, partitions: set[int]) -> None:
        """Partitions are taken away: their views are forgotten, and the views already sent
        land before the next owner folds (it is given the partitions only once this
        returns), so none lands after that owner's and stands as the job's last."""
        self._forget_partitions(partitions)
        try:
            await asyncio.wait_for(self._landed.wait(), HANDOVER_WAIT_S)
        except TimeoutError:
            log.warning("views still on their way to Kafka at a handover")

    def _forget_partitions(self, partitions: set[int]) -> None:
        """The views of jobs on partitions taken away: another replica folds them until
        they come back, and then these would be out of date."""
        self._handovers += 1
        kept = [(j, known) for j, known in self._known.items() if known[0] not in partitions]
        self._known = OrderedDict(kept)

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batch = await consumer.getmany(timeout_ms=500)
                if batch:
                    await self.fold_records([r for rs in batch.values() for r in rs])
                    await consumer.commit()
            except (CommitFailedError, _HandedOver):  # the new owner refolds, a no-op
                log.warning("partitions handed over while folding; the next owner refolds")
            except Exception:
                # Kafka refused a read or a write: fold again from the last commit.
                log.exception("folding status events failed; retrying from the last commit")
                await asyncio.sleep(1)
                await self._rewind(consumer)

    async def _rewind(self, consumer: AIOKafkaConsumer) -> None:
        """Back to the last commit, however long Kafka takes to answer: going on from
        where the failed batch left off would skip its events."""
        self._forget_partitions({tp.partition for tp in consumer.assignment()})
        while True:
            try:
                for tp in consumer.assignment():
                    committed = await consumer.committed(tp)
                    if committed is None:
                        await consumer.seek_to_beginning(tp)
                    else:
                        consumer.seek(tp, committed)
                return
            except Exception:
                log.exception("rewinding the job-state folder failed; retrying")
                await asyncio.sleep(1)

    async def fold_records(self, records: list[Any]) -> None:
        """Folds each status record into its job and produces the views that changed;
        returns once Kafka has them all. Stops (``_HandedOver``) when partitions are taken
        away meanwhile: a view written after the next owner's would be the job's last."""
        sent: list[asyncio.Future[Any]] = []
        handovers = self._handovers
        self._landed.clear()
        try:
            for record in records:
                try:
                    event = StatusEvent.FromString(record.value or b"")
                except Exception:
                    log.warning("undecodable status event", extra={"offset": record.offset})
                    continue
                if not event.job_id:
                    continue
                view = await self._view_of(event.job_id, record.partition)
                if self._handovers != handovers:
                    raise _HandedOver
                if view is ERASED:
                    continue
                new = fold(view, event)
                if new is None:
                    continue
                self._remember(event.job_id, record.partition, new)
                sent.append(
                    await self._producer.send(
                        self._settings.topic(JOBS),
                        new.SerializeToString(),
                        key=event.job_id.encode(),
                        headers=[(STATUS_OFFSET, str(record.offset).encode())],
                    )
                )
        finally:  # handed over or not, what was sent lands before a handover completes
            outcomes = await asyncio.gather(*sent, return_exceptions=True)
            self._landed.set()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _view_of(self, job_id: str, partition: int) -> Found:
        if job_id in self._known:
            self._known.move_to_end(job_id)
            return self._known[job_id][1]
        if not self._may_exist(job_id):
            return None  # a new job: no record of it was ever seen
        found, _ = await self._lookup.find(job_id)
        if found is not None:
            self._remember(job_id, partition, found)
        return found

    def _remember(
        self, job_id: str, partition: int | None, view: JobView | Literal[_Erased.ERASED]
    ) -> None:
        self._known[job_id] = (None if view is ERASED else partition, view)
        self._known.move_to_end(job_id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)


class _HandedOver(Exception):
    """Partitions were taken away from the folder in the middle of a batch."""


class _TakeOver(ConsumerRebalanceListener):  # type: ignore[misc]
    """Before folding partitions it was just given, the folder waits until this replica's
    status view has read alive.jobs to its end: the views the previous owner wrote are
    then known (``may_exist``), and none is taken for a new job."""

    def __init__(
        self,
        caught_up: Callable[[], Awaitable[None]],
        hand_over: Callable[[set[int]], Awaitable[None]],
    ) -> None:
        self._caught_up = caught_up
        self._hand_over = hand_over

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._hand_over({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._caught_up()
