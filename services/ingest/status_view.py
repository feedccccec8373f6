"""Each job's state as Get, Watch and Submit see it: a bounded cache over alive.jobs.

alive.jobs (compacted, keyed by job id, written by the folder in job_states.py) holds every
job's latest JobView. The view reads it from the beginning at start: about one record per
job (compaction), never the history of transitions on alive.status. It is ready once it
has caught up with the end offsets it saw at start, and follows the topic after, telling
watchers what changed.

Memory is bounded by settings, not by how many jobs there have been:
- the cache holds the views (with their transitions) of the ``job_cache_size`` jobs used
  or updated last (LRU); a job not in it is looked up on alive.jobs (``JobStateLookup``:
  one partition read), then cached again, so an evicted job loses nothing;
- a Bloom filter (``job_filter_size`` jobs, about 1.2 bytes each) holds every job id seen,
  so a job that certainly does not exist (every new Submit) costs no lookup;
- the jobs not yet READY or ended are counted per creator (the API's caps): as many as
  are under way.

A tombstone (null value) on alive.jobs erases the job: it leaves the cache, Get finds it
NOT_FOUND (a lookup finds the tombstone) and its watchers end with ``JobGone``.

Submit and Cancel apply their own events at once (``apply``) so that a retry finds the job
before the folder's record comes back; such events stay pending on the cached view until a
record from alive.jobs holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from alive.jobs import SETTLED_STATES
from alive.kafka import make_consumer
from alive.pipeline import JOBS, PIPELINE
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import StatusEvent
from services.ingest.job_states import JobStateLookup, fold, status_offset
from services.ingest.settings import IngestSettings

log = logging.getLogger(__name__)

RECREATED_CHECK_S = 2.0  # how often the view checks whether its topic was made anew


class JobGone(Exception):
    """The watched job was erased."""


class JobStatesUnavailable(Exception):
    """A job not in the cache could not be read from alive.jobs (Kafka down or too slow)."""


@dataclass
class _Entry:
    view: JobView
    # The alive.status offset the view is folded up to (-1: only events applied here).
    offset: int
    # Events applied here (Submit, Cancel) that no record from alive.jobs holds yet.
    pending: list[StatusEvent] = field(default_factory=list)


class JobIdFilter:
    """A Bloom filter of job ids: ``may_exist`` is never wrong about a job it was told of,
    and wrong about about 1% of others while it holds fewer than ``capacity`` (more: more
    often, never unsafely). Its size is fixed at start."""

    FALSE_POSITIVE_RATE = 0.01

    def __init__(self, capacity: int) -> None:
        bits = math.ceil(-capacity * math.log(self.FALSE_POSITIVE_RATE) / math.log(2) ** 2)
        self._bits = bytearray((bits + 7) // 8)
        self._size = len(self._bits) * 8
        self._hashes = max(1, round(bits / capacity * math.log(2)))

    def _positions(self, job_id: str) -> list[int]:
        digest = hashlib.blake2b(job_id.encode(), digest_size=16).digest()
        h1, h2 = int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:], "big") | 1
        return [(h1 + i * h2) % self._size for i in range(self._hashes)]

    def add(self, job_id: str) -> None:
        for p in self._positions(job_id):
            self._bits[p >> 3] |= 1 << (p & 7)

    def may_exist(self, job_id: str) -> bool:
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(job_id))


class StatusViewMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.cached = Gauge(
            "alive_ingest_job_cache_jobs", "Jobs held in the status cache", registry=registry
        )
        self.lookups = Counter(
            "alive_ingest_job_lookups",
            "Jobs not in the status cache, looked up on alive.jobs, by outcome",
            ["outcome"],
            registry=registry,
        )


class StatusView:
    def __init__(
        self,
        settings: ServiceSettings,
        own: IngestSettings,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._settings = settings
        self._own = own
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._filter = JobIdFilter(own.job_filter_size)
        # Jobs still on their way to READY or an end, per creator: what the API's caps count.
        self._unsettled: dict[str, set[str]] = {}
        self._creator_of_unsettled: dict[str, str] = {}
        self._watchers: dict[str, set[asyncio.Queue[StatusEvent | None]]] = {}
        self.lookup = JobStateLookup(settings, own, client_id="ingest-job-lookup")
        self._metrics = StatusViewMetrics(registry)
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Event()
        self._polled = asyncio.Event()  # pulsed after each poll of alive.jobs
        self._ends: dict[TopicPartition, int] = {}  # alive.jobs' end at the last check
        # Called with a job id when a tombstone erases it (the folder stops folding it).
        self.on_erased: list[Callable[[str], None]] = []

    @property
    def ready(self) -> bool:
        return self._caught_up.is_set()

    @property
    def cached_jobs(self) -> int:
        return len(self._cache)

    async def start(self) -> None:
        topic = self._settings.topic(JOBS)
        consumer = make_consumer(self._settings, group_id=None, client_id="ingest-status-view")
        await consumer.start()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"topic {topic} does not exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        self._consumer = consumer
        await self.lookup.start()
        self._task = asyncio.create_task(self._follow(consumer, end))
        await asyncio.wait_for(self._caught_up.wait(), timeout=self._own.job_states_start_s)
        log.info("status view caught up", extra={"jobs": len(self._cache)})

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        await self.lookup.stop()

    async def caught_up(self) -> None:
        """Returns once every record on alive.jobs now has been read: what another
        replica's folder wrote before this one took over its partitions."""
        if self._consumer is None:
            return
        consumer = self._consumer
        end = await consumer.end_offsets(list(consumer.assignment()))
        while not all([await consumer.position(tp) >= off for tp, off in end.items()]):
            await self._polled.wait()

    async def _follow(self, consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> None:
        checked_at = asyncio.get_running_loop().time()
        while True:
            if not self._caught_up.is_set() and all(
                [await consumer.position(tp) >= off for tp, off in end.items()]
            ):
                self._caught_up.set()
            if asyncio.get_running_loop().time() - checked_at > RECREATED_CHECK_S:
                checked_at = asyncio.get_running_loop().time()
                await self._restart_recreated(consumer)
            try:
                batch = await consumer.getmany(timeout_ms=200)
            except Exception:  # the consumer reconnects by itself; keep following
                log.exception("reading alive.jobs failed; retrying")
                await asyncio.sleep(1)
                continue
            self._polled.set()  # wakes the waiters in caught_up()
            self._polled.clear()
            for records in batch.values():
                for record in records:
                    job_id = (record.key or b"").decode(errors="replace")
                    if record.value is None:
                        self.erase(job_id)
                        continue
                    try:
                        view = JobView.FromString(record.value)
                    except Exception:
                        log.warning("undecodable job state", extra={"offset": record.offset})
                        continue
                    self.apply_state(view, status_offset(record.headers))

    def apply_state(self, view: JobView, offset: int) -> None:
        """A job's latest state from alive.jobs, folded up to status ``offset``."""
        entry = self._cache.get(view.job_id)
        if entry is not None and entry.offset >= offset:
            return  # an older record (refolded, or read after a lookup found a newer one)
        pending: list[StatusEvent] = []
        new = view
        for event in entry.pending if entry else ():
            folded = fold(new, event)
            if folded is not None:  # not in the record yet: keep it pending
                new, pending = folded, [*pending, event]
        self._store(view.job_id, _Entry(new, offset, pending))
        self._filter.add(view.job_id)

    async def _restart_recreated(self, consumer: AIOKafkaConsumer) -> None:
        """Reads a partition from its start again when it ends before where the view stands
        and before where it ended at the last check: the topic was made anew (a broker that
        came back empty). Without this the view would wait at the old offset and never see
        a status again. (The embedded broker reports a partition's end as its last batch's
        first offset + 1, so a position past the end alone is no sign.)"""
        partitions = list(consumer.assignment())
        try:
            ends = await consumer.end_offsets(partitions)
        except KafkaError:
            return  # the broker is away: the service's broker probe reports it
        behind = []
        for tp in partitions:
            end = ends.get(tp, 0)
            if await consumer.position(tp) > end and end < self._ends.get(tp, 0):
                behind.append(tp)
        self._ends = ends
        if behind:
            log.warning(
                "status topic made anew; reading it from its start",
                extra={"partitions": sorted(tp.partition for tp in behind)},
            )
            await consumer.seek_to_beginning(*behind)

    def apply(self, event: StatusEvent) -> None:
        """An event this replica sent (Submit, Cancel), shown before its record comes back.
        A job not in the cache starts from what the event says."""
        entry = self._cache.get(event.job_id)
        new = fold(entry.view if entry else None, event)
        if new is None:
            return
        pending = [*(entry.pending if entry else ()), event]
        self._store(event.job_id, _Entry(new, entry.offset if entry else -1, pending))

    def erase(self, job_id: str) -> None:
        """A tombstone: the job is forgotten, its watchers end."""
        self._cache.pop(job_id, None)
        self._metrics.cached.set(len(self._cache))
        self._settle(job_id)
        for queue in self._watchers.get(job_id, ()):
            queue.put_nowait(None)
        for callback in self.on_erased:
            callback(job_id)

    def _store(self, job_id: str, entry: _Entry) -> None:
        old = self._cache.get(job_id)
        previous = old.view if old else None
        self._cache[job_id] = entry
        self._cache.move_to_end(job_id)
        while len(self._cache) > self._own.job_cache_size:
            self._cache.popitem(last=False)
        self._metrics.cached.set(len(self._cache))
        self._count(entry.view)
        for event in _changes(previous, entry.view):
            for queue in self._watchers.get(job_id, ()):
                queue.put_nowait(event)

    def _count(self, view: JobView) -> None:
        if view.state in SETTLED_STATES:
            self._settle(view.job_id)
            return
        self._unsettled.setdefault(view.creator_id, set()).add(view.job_id)
        self._creator_of_unsettled[view.job_id] = view.creator_id

    def _settle(self, job_id: str) -> None:
        creator = self._creator_of_unsettled.pop(job_id, None)
        if creator is None:
            return
        jobs = self._unsettled[creator]
        jobs.discard(job_id)
        if not jobs:
            del self._unsettled[creator]

    def jobs_of(self, creator_id: str) -> list[JobView]:
        """The creator's jobs in the cache (erasure finds the others through its index)."""
        return [
            JobView.FromString(entry.view.SerializeToString())
            for entry in self._cache.values()
            if entry.view.creator_id == creator_id
        ]

    def in_flight(self, creator_id: str | None = None) -> int:
        """Jobs not yet READY or ended: the creator's, or everyone's."""
        if creator_id is not None:
            return len(self._unsettled.get(creator_id, ()))
        return len(self._creator_of_unsettled)

    def may_exist(self, job_id: str) -> bool:
        """False: alive.jobs certainly holds no record of the job (a new job, an unknown id):
        no lookup needed. An event only applied here (``apply``) does not count."""
        return job_id in self._cache or self._filter.may_exist(job_id)

    async def get(self, job_id: str) -> JobView | None:
        """The job's view (a copy), from the cache or else from alive.jobs; None for a job
        that does not exist or was erased. Raises JobStatesUnavailable when it cannot tell."""
        entry = self._cache.get(job_id)
        if entry is None and self.may_exist(job_id):
            entry = await self._looked_up(job_id)
        if entry is None:
            return None
        self._cache.move_to_end(job_id)
        return JobView.FromString(entry.view.SerializeToString())

    async def _looked_up(self, job_id: str) -> _Entry | None:
        try:
            found, offset = await self.lookup.find(job_id)
        except Exception as exc:
            self._metrics.lookups.labels("failed").inc()
            raise JobStatesUnavailable(f"alive.jobs could not be read: {exc!r}") from exc
        self._metrics.lookups.labels("found" if isinstance(found, JobView) else "absent").inc()
        if job_id in self._cache:  # its record arrived meanwhile
            return self._cache[job_id]
        if not isinstance(found, JobView):
            return None
        self.apply_state(found, offset)
        return self._cache.get(job_id)

    async def watch(self, job_id: str) -> AsyncIterator[StatusEvent]:
        """The job's transitions so far, then each change as it arrives: a transition, or a
        progress report of the stage at work. Raises JobGone if the job is erased."""
        queue: asyncio.Queue[StatusEvent | None] = asyncio.Queue()
        watchers = self._watchers.setdefault(job_id, set())
        watchers.add(queue)
        try:
            view = await self.get(job_id)
            seen = list(view.history) if view else []
            for event in seen:
                yield event
            while True:
                change = await queue.get()
                if change is None:
                    raise JobGone(job_id)
                if change.HasField("progress") or change not in seen:
                    seen.append(change)
                    yield change
        finally:
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(job_id, None)


def _changes(before: JobView | None, after: JobView) -> list[StatusEvent]:
    """What a watcher is told when a job's view goes from ``before`` to ``after``: each new
    transition, then the new progress report, if any (of the stage after the job's state)."""
    old = list(before.history) if before else []
    changes = [e for e in after.history if e not in old]
    progressed = after.HasField("progress") and (
        before is None or not before.HasField("progress") or before.progress != after.progress
    )
    if progressed:
        stage = PIPELINE.next_stage(after.state)
        changes.append(
            StatusEvent(
                job_id=after.job_id,
                request_id=after.request_id,
                creator_id=after.creator_id,
                stage=stage.name if stage else "",
                progress=after.progress,
            )
        )
    return changes
