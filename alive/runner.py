"""The consume-process-produce loop every stage runs in: the Kafka half.

What happens to one event (decode, ledger, retries, which messages go out) is
alive/processing.py; this module feeds it records and owns the consumer.

Guarantees (docs/delivery.md):
- at-least-once: an offset is committed only after the event's outputs are acknowledged
  (acks=all), in offset order per partition even when events finish out of order;
- idempotent: a job the stage already finished (stage ledger) is not processed again, and
  events with the same key (job) are processed one at a time; replicas that both take one
  job (a rebalance, a zombie consumer) send one decision, the one recorded first;
- bounded: at most ``max_in_flight`` events at once; partitions are paused, not left
  unpolled, so a job that takes minutes does not get the consumer evicted from its group;
- nothing dropped: undecodable events and permanent failures go to the dead-letter topic
  with the reason in headers, and the job's status becomes FAILED. If Kafka itself refuses
  an output, the runner stops with an error and the uncommitted events are redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError

from alive.attestation import Keyring
from alive.blobs import StageLedger
from alive.kafka import make_consumer
from alive.locks import KeyedLocks
from alive.processing import EventProcessor, Outbound, Record, check_sizes, coords
from alive.settings import ServiceSettings
from alive.stage import Stage
from alive.telemetry import StageMetrics

log = logging.getLogger(__name__)

LAG_REFRESH_S = 5.0  # how often the lag gauges ask the brokers for end offsets
POLL_MS = 100  # the longest a poll waits for records (or, when full, for a free slot)


class OffsetTracker:
    """Commit points per partition when events finish out of order.

    Offsets begin in increasing order per partition; the commit point advances only over
    a prefix of finished offsets, so a slow event holds back the commit, never skips it.
    """

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = {}
        self._finished: dict[TopicPartition, set[int]] = {}
        self._ready: dict[TopicPartition, int] = {}
        self._timestamps: dict[TopicPartition, dict[int, int]] = {}
        self._next: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int, timestamp_ms: int = 0) -> None:
        """``timestamp_ms``: the record's Kafka timestamp (for lag in seconds)."""
        self._pending.setdefault(tp, deque()).append(offset)
        self._finished.setdefault(tp, set())
        self._timestamps.setdefault(tp, {})[offset] = timestamp_ms
        self._next[tp] = offset + 1

    def finish(self, tp: TopicPartition, offset: int) -> None:
        pending, finished = self._pending.get(tp), self._finished.get(tp)
        if pending is None or finished is None:
            return  # the partition was revoked meanwhile
        finished.add(offset)
        while pending and pending[0] in finished:
            done = pending.popleft()
            finished.discard(done)
            self._timestamps[tp].pop(done, None)
            self._ready[tp] = done + 1

    def take_committable(
        self, partitions: set[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        chosen = {
            tp: off for tp, off in self._ready.items() if partitions is None or tp in partitions
        }
        for tp in chosen:
            del self._ready[tp]
        return chosen

    def forget(self, tp: TopicPartition) -> None:
        self._pending.pop(tp, None)
        self._finished.pop(tp, None)
        self._ready.pop(tp, None)
        self._timestamps.pop(tp, None)
        self._next.pop(tp, None)

    def commit_point(self, tp: TopicPartition) -> int | None:
        """The offset the group's commit will reach once finished work is committed: the
        oldest unfinished offset, else the next one to fetch (None: nothing taken yet)."""
        pending = self._pending.get(tp)
        if pending:
            return pending[0]
        return self._next.get(tp)

    def oldest_timestamp_ms(self, tp: TopicPartition) -> int | None:
        """The Kafka timestamp of the oldest record taken and not finished (None: none)."""
        pending = self._pending.get(tp)
        if not pending:
            return None
        return self._timestamps.get(tp, {}).get(pending[0])

    def uncommitted(self) -> int:
        return sum(len(q) for q in self._pending.values())


class KafkaSink:
    """Produces a processor's records; returns once Kafka acknowledged all of them."""

    def __init__(self, producer: AIOKafkaProducer, max_request_size: int) -> None:
        self._producer = producer
        self._max_request_size = max_request_size

    async def send(self, records: Sequence[Outbound]) -> None:
        check_sizes(records, self._max_request_size)
        sends = [
            await self._producer.send(r.topic, r.value, key=r.key, headers=list(r.headers))
            for r in records
        ]
        await asyncio.gather(*sends)


class StageRunner:
    def __init__(
        self,
        stage: Stage[Any, Any],
        settings: ServiceSettings,
        producer: AIOKafkaProducer,
        ledger: StageLedger,
        metrics: StageMetrics,
        keyring: Keyring,
    ) -> None:
        self.stage = stage
        self.spec = stage.spec
        self.settings = settings
        self.metrics = metrics
        sink = KafkaSink(producer, settings.kafka.max_request_size)
        self.processor = EventProcessor(stage, settings, sink, ledger, metrics, keyring)
        self._max_in_flight: int = stage.settings.max_in_flight
        self._tracker = OffsetTracker()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._key_locks = KeyedLocks()
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._fatal: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False
        self._end_offsets: dict[TopicPartition, int] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._caught_up_ms: dict[TopicPartition, float] = {}
        self._end_offsets_at = 0.0

    @property
    def ready(self) -> bool:
        return self._started and not self._stopping.is_set() and self._fatal is None

    def stop(self) -> None:
        """Stop fetching; run() then drains in-flight work, commits and returns."""
        self._stopping.set()

    async def run(self) -> None:
        spec = self.spec
        consumer = make_consumer(self.settings, group_id=spec.consumer_group, client_id=spec.name)
        self._consumer = consumer
        topic = self.settings.topic(spec.consumes)
        consumer.subscribe([topic], listener=_Rebalance(self))
        await consumer.start()
        self._started = True
        log.info("consuming", extra={"topic": topic})
        try:
            while not self._stopping.is_set() and self._fatal is None:
                await self._poll_once(consumer)
            await self._drain(consumer)
        finally:
            await consumer.stop()
            self._started = False
        if self._fatal is not None:
            raise RuntimeError("stage runner stopped on an error") from self._fatal

    async def _poll_once(self, consumer: AIOKafkaConsumer) -> None:
        self._slot_freed.clear()  # before counting: a finish after the count wakes the wait
        free = self._max_in_flight - self._in_flight()
        if free <= 0:
            batch = await self._poll_when_a_slot_frees(consumer)
        else:
            if consumer.paused():
                consumer.resume(*consumer.paused())
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=free)
        for tp, records in batch.items():
            for record in records:
                self._start_task(tp, record)
        self.metrics.in_flight.labels(self.spec.name).set(self._in_flight())
        self.metrics.commit_lag.labels(self.spec.name).set(self._tracker.uncommitted())
        await self._export_lag(consumer)
        await self._commit(consumer)

    async def _export_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Consumer lag per partition this consumer owns, in records and in seconds: the
        partition's end offset (from fetches, and from the brokers every LAG_REFRESH_S)
        minus the commit point (the oldest unfinished record, else the next to take, else
        the group's position)."""
        assigned = consumer.assignment()
        if time.monotonic() - self._end_offsets_at > LAG_REFRESH_S and assigned:
            # A paused partition is not fetched, so its high watermark from fetches goes
            # stale exactly when work piles up: ask the brokers every few seconds.
            self._end_offsets_at = time.monotonic()
            try:
                self._end_offsets = await asyncio.wait_for(
                    consumer.end_offsets(list(assigned)), timeout=LAG_REFRESH_S
                )
                # Where the group stands on a partition nothing was taken from yet.
                untaken = [tp for tp in assigned if self._tracker.commit_point(tp) is None]
                for tp in untaken:
                    self._positions[tp] = await asyncio.wait_for(
                        consumer.position(tp), timeout=LAG_REFRESH_S
                    )
            except (KafkaError, TimeoutError) as exc:  # the gauges wait; the work does not
                log.warning("could not read offsets for lag", extra={"error": str(exc)})
        now_ms = time.time() * 1000
        group = self.spec.consumer_group
        for tp in assigned:
            ends = [e for e in (consumer.highwater(tp), self._end_offsets.get(tp)) if e is not None]
            commit_point = self._tracker.commit_point(tp)
            if commit_point is None:
                commit_point = self._positions.get(tp)
            if not ends or commit_point is None:
                continue
            labels = (group, tp.topic, str(tp.partition))
            lag = max(max(ends) - commit_point, 0)
            self.metrics.lag_messages.labels(*labels).set(lag)
            if lag == 0:
                self._caught_up_ms[tp] = now_ms
            oldest: float | None = self._tracker.oldest_timestamp_ms(tp)
            if oldest is None and lag > 0:
                # Records wait unfetched (a paused partition): their timestamps are unknown,
                # but none arrived before the partition was last caught up.
                oldest = self._caught_up_ms.get(tp)
            age = max(now_ms - oldest, 0) / 1000 if oldest else 0.0
            self.metrics.lag_seconds.labels(*labels).set(age)

    def _forget_lag(self, tp: TopicPartition) -> None:
        labels = (self.spec.consumer_group, tp.topic, str(tp.partition))
        for gauge in (self.metrics.lag_messages, self.metrics.lag_seconds):
            try:
                gauge.remove(*labels)
            except KeyError:
                pass  # never exported

    def _in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._tasks.values())

    async def _poll_when_a_slot_frees(
        self, consumer: AIOKafkaConsumer
    ) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
        """Full: pauses the partitions and waits until an event finishes or POLL_MS pass,
        then polls, since a consumer that stops polling leaves its group. A paused
        partition's poll returns nothing; one assigned meanwhile is not paused yet, so its
        records are taken. Polling POLL_MS instead held the slots of a batched model's
        events, which finish together, up to that long (docs/performance.md)."""
        consumer.pause(*consumer.assignment())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._slot_freed.wait(), POLL_MS / 1000)
        batch: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
        batch = await consumer.getmany(timeout_ms=1, max_records=1)
        return batch

    def _start_task(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._tracker.begin(tp, record.offset, record.timestamp)
        task = asyncio.create_task(self._run_one(tp, _record(record)))
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(lambda _: self._slot_freed.set())

    async def _run_one(self, tp: TopicPartition, record: Record) -> None:
        try:
            # Events of one job share a key: one at a time, so a duplicate sees the ledger.
            async with self._key_locks.hold(record.key or b""):
                await self.processor.handle(record)
            self._tracker.finish(tp, record.offset)
        except asyncio.CancelledError:
            raise  # handed back at shutdown: not committed, so redelivered
        except Exception as exc:  # Kafka refused an output: stop, do not commit
            log.exception("could not complete an event; stopping", extra=coords(record))
            self._fatal = exc

    async def _commit(
        self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition] | None = None
    ) -> None:
        owned = consumer.assignment() if partitions is None else partitions
        offsets = self._tracker.take_committable(owned)
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # Lost the partitions in a rebalance: the new owner redelivers; the ledger
            # keeps that harmless.
            log.warning("commit failed", extra={"error": str(exc)})

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """On shutdown: fetch nothing more, let in-flight events finish, commit."""
        consumer.pause(*consumer.assignment())
        await self._finish_tasks(set(self._tasks), self.settings.shutdown_grace_s)
        await self._commit(consumer)
        log.info("drained", extra={"uncommitted": self._tracker.uncommitted()})

    async def _finish_tasks(self, partitions: set[TopicPartition], timeout_s: float) -> None:
        tasks = [t for tp in partitions for t in self._tasks.get(tp, ())]
        if not tasks:
            return
        _, unfinished = await asyncio.wait(tasks, timeout=timeout_s)
        for task in unfinished:
            task.cancel()  # handed back: its offset stays uncommitted
        if unfinished:
            await asyncio.wait(unfinished)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        await self._finish_tasks(revoked, self.settings.shutdown_grace_s)
        await self._commit(consumer, revoked)
        for tp in revoked:
            self._tracker.forget(tp)
            self._tasks.pop(tp, None)
            self._positions.pop(tp, None)
            self._caught_up_ms.pop(tp, None)
            self._forget_lag(tp)


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StageRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )


def _record(record: ConsumerRecord[bytes, bytes]) -> Record:
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        record.value,
        tuple(record.headers or ()),
    )


__all__ = ["OffsetTracker", "StageRunner"]
