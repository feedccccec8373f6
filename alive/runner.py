"""The consume-process-produce loop every stage runs in.

Guarantees (docs/delivery.md):
- at-least-once: an offset is committed only after the event's outputs are acknowledged
  (acks=all), in offset order per partition even when events finish out of order;
- idempotent: a job the stage already finished (stage ledger) is not processed again, and
  events with the same key (job) are processed one at a time;
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
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from google.protobuf.message import DecodeError, Message
from opentelemetry import trace

from alive.blobs import StageLedger
from alive.kafka import make_consumer
from alive.settings import ServiceSettings
from alive.stage import JobIdentity, PermanentError, Stage, StageContext, TransientError, Veto
from alive.telemetry import StageMetrics, context_from_headers, headers_with_trace, now_ms
from alive.v1.events_pb2 import (
    Job,
    JobState,
    StageOutcome,
    StageRecord,
    StatusEvent,
    Verdict,
    VetoEvent,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("alive.runner")

# Headers on dead-lettered events (docs/topics.md).
DLQ_REASON = "alive-dlq-reason-code"
DLQ_ERROR = "alive-dlq-error"
DLQ_STAGE = "alive-dlq-stage"
DLQ_TOPIC = "alive-dlq-original-topic"
DLQ_PARTITION = "alive-dlq-original-partition"
DLQ_OFFSET = "alive-dlq-original-offset"
DLQ_JOB_ID = "alive-dlq-job-id"


class OffsetTracker:
    """Commit points per partition when events finish out of order.

    Offsets begin in increasing order per partition; the commit point advances only over
    a prefix of finished offsets, so a slow event holds back the commit, never skips it.
    """

    def __init__(self) -> None:
        self._pending: dict[TopicPartition, deque[int]] = {}
        self._finished: dict[TopicPartition, set[int]] = {}
        self._ready: dict[TopicPartition, int] = {}

    def begin(self, tp: TopicPartition, offset: int) -> None:
        self._pending.setdefault(tp, deque()).append(offset)
        self._finished.setdefault(tp, set())

    def finish(self, tp: TopicPartition, offset: int) -> None:
        pending, finished = self._pending.get(tp), self._finished.get(tp)
        if pending is None or finished is None:
            return  # the partition was revoked meanwhile
        finished.add(offset)
        while pending and pending[0] in finished:
            done = pending.popleft()
            finished.discard(done)
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

    def uncommitted(self) -> int:
        return sum(len(q) for q in self._pending.values())


class KeyedLocks:
    """One lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[bytes, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: bytes) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _Outcome:
    """What processing one event came to, before anything is produced."""

    def __init__(
        self,
        passed: Job | None = None,
        veto: Veto | None = None,
        failure: PermanentError | None = None,
    ) -> None:
        self.passed, self.veto, self.failure = passed, veto, failure


class StageRunner:
    def __init__(
        self,
        stage: Stage[Any, Any],
        settings: ServiceSettings,
        producer: AIOKafkaProducer,
        ledger: StageLedger,
        metrics: StageMetrics,
    ) -> None:
        self.stage = stage
        self.settings = settings
        self.producer = producer
        self.ledger = ledger
        self.metrics = metrics
        self._tracker = OffsetTracker()
        self._tasks: dict[TopicPartition, set[asyncio.Task[None]]] = {}
        self._key_locks = KeyedLocks()
        self._stopping = asyncio.Event()
        self._fatal: BaseException | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._started = False

    @property
    def ready(self) -> bool:
        return self._started and not self._stopping.is_set() and self._fatal is None

    def stop(self) -> None:
        """Stop fetching; run() then drains in-flight work, commits and returns."""
        self._stopping.set()

    async def run(self) -> None:
        consumer = make_consumer(
            self.settings, group_id=f"alive-{self.stage.name}", client_id=self.stage.name
        )
        self._consumer = consumer
        consumer.subscribe([self.stage.input_topic], listener=_Rebalance(self))
        await consumer.start()
        self._started = True
        log.info("consuming", extra={"topic": self.stage.input_topic})
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
        in_flight = self._in_flight()
        free = self.settings.max_in_flight - in_flight
        if free <= 0:
            consumer.pause(*consumer.assignment())
        elif consumer.paused():
            consumer.resume(*consumer.paused())
        batch = await consumer.getmany(timeout_ms=100, max_records=max(free, 1))
        for tp, records in batch.items():
            for record in records:
                self._start_task(tp, record)
        self.metrics.in_flight.labels(self.stage.name).set(self._in_flight())
        self.metrics.commit_lag.labels(self.stage.name).set(self._tracker.uncommitted())
        await self._commit(consumer)

    def _in_flight(self) -> int:
        return sum(len(tasks) for tasks in self._tasks.values())

    def _start_task(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._tracker.begin(tp, record.offset)
        task = asyncio.create_task(self._run_one(tp, record))
        tasks = self._tasks.setdefault(tp, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run_one(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        try:
            # Events of one job share a key: one at a time, so a duplicate sees the ledger.
            async with self._key_locks.hold(record.key or b""):
                await self._handle(record)
            self._tracker.finish(tp, record.offset)
        except asyncio.CancelledError:
            raise  # handed back at shutdown: not committed, so redelivered
        except Exception as exc:  # Kafka refused an output: stop, do not commit
            log.exception("could not complete an event; stopping", extra=_coords(record))
            self._fatal = exc

    async def _handle(self, record: ConsumerRecord[bytes, bytes]) -> None:
        stage = self.stage
        started_ms, t0 = now_ms(), time.perf_counter()
        self.metrics.events_in.labels(stage.name, record.topic).inc()
        try:
            event = stage.input_type.FromString(record.value or b"")
        except DecodeError as exc:
            await self._dead_letter(record, "UNDECODABLE_EVENT", str(exc), None)
            self._count("undecodable")
            return
        try:
            identity = stage.identify(event)
            if not StageLedger.valid_job_id(identity.job_id):
                raise PermanentError("INVALID_JOB_ID", f"{identity.job_id!r} is not a job id")
        except PermanentError as exc:
            await self._dead_letter(record, exc.reason_code, exc.detail, None)
            self._count("dead_lettered")
            return
        with tracer.start_as_current_span(
            stage.name,
            context=context_from_headers(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"alive.job_id": identity.job_id, **_span_coords(record)},
        ) as span:
            if self.ledger.get(stage.name, identity.job_id) is not None:
                log.info("already processed; skipping", extra={"job_id": identity.job_id})
                self._count("duplicate")
                return
            ctx = StageContext(identity=identity, attempt=1, started_at_ms=started_ms)
            outcome = await self._process_with_retries(event, ctx)
            if outcome.passed is not None:
                await self._emit_pass(outcome.passed, ctx)
                self._count("passed")
            elif outcome.veto is not None:
                await self._emit_veto(outcome.veto, ctx)
                self._count("vetoed" if stage.veto_verdict == Verdict.VETO else "rejected")
            elif outcome.failure is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.failure.reason_code))
                await self._fail(record, outcome.failure, ctx)
                self._count("failed")
        self.metrics.latency.labels(stage.name).observe(time.perf_counter() - t0)

    async def _process_with_retries(self, event: Message, ctx: StageContext) -> _Outcome:
        settings = self.settings
        for attempt in range(1, settings.max_attempts + 1):
            ctx.attempt = attempt
            try:
                result = await self.stage.process(event, ctx)
            except TransientError as exc:
                self.metrics.errors.labels(self.stage.name, "transient").inc()
                if attempt == settings.max_attempts:
                    return _Outcome(failure=PermanentError("RETRIES_EXHAUSTED", str(exc)))
                delay = min(settings.retry_max_s, settings.retry_base_s * 2 ** (attempt - 1))
                delay *= random.uniform(0.5, 1.0)  # jitter: replicas do not retry in step
                log.warning(
                    "transient error; retrying",
                    extra={
                        "job_id": ctx.identity.job_id,
                        "attempt": attempt,
                        "error": str(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                await asyncio.sleep(delay)
                continue
            except PermanentError as exc:
                self.metrics.errors.labels(self.stage.name, "permanent").inc()
                return _Outcome(failure=exc)
            except Exception as exc:  # a bug or an unexpected input: never drop the job
                log.exception("stage raised", extra={"job_id": ctx.identity.job_id})
                self.metrics.errors.labels(self.stage.name, "permanent").inc()
                detail = f"{type(exc).__name__}: {exc}"[:500]
                return _Outcome(failure=PermanentError("STAGE_ERROR", detail))
            if isinstance(result, Veto):
                return _Outcome(veto=result)
            return _Outcome(passed=result)
        raise AssertionError("unreachable: the last attempt returns")

    async def _emit_pass(self, job: Job, ctx: StageContext) -> None:
        stage, finished = self.stage, now_ms()
        job.stages.append(
            StageRecord(
                stage=stage.name,
                verdict=Verdict.PASS,
                started_at_ms=ctx.started_at_ms,
                finished_at_ms=finished,
                scores=ctx.scores,
            )
        )
        status = self._status(ctx, stage.passed_state, Verdict.PASS, (), "", finished)
        if job.HasField("video"):
            status.video.CopyFrom(job.video)
        await self._send_all(
            [(stage.output_topic, job), (self.settings.topics.status, status)], ctx.identity.job_id
        )
        self.ledger.put(
            stage.name, ctx.identity.job_id, StageOutcome(passed=job).SerializeToString()
        )
        log.info(
            "passed",
            extra={"job_id": ctx.identity.job_id, "duration_ms": finished - ctx.started_at_ms},
        )

    async def _emit_veto(self, veto: Veto, ctx: StageContext) -> None:
        stage, at = self.stage, now_ms()
        event = VetoEvent(
            job_id=ctx.identity.job_id,
            checkpoint=stage.name,
            reason_codes=veto.reason_codes,
            scores={**ctx.scores, **veto.scores},
            detail=veto.detail,
            at_ms=at,
        )
        status = self._status(
            ctx, stage.veto_state, stage.veto_verdict, veto.reason_codes, veto.detail, at
        )
        await self._send_all(
            [(self.settings.topics.vetoes, event), (self.settings.topics.status, status)],
            ctx.identity.job_id,
        )
        self.ledger.put(
            stage.name, ctx.identity.job_id, StageOutcome(vetoed=event).SerializeToString()
        )
        for reason in veto.reason_codes:
            self.metrics.vetoes.labels(stage.name, reason).inc()
        log.info(
            "vetoed", extra={"job_id": ctx.identity.job_id, "reason_codes": list(veto.reason_codes)}
        )

    async def _fail(
        self, record: ConsumerRecord[bytes, bytes], failure: PermanentError, ctx: StageContext
    ) -> None:
        job_id = ctx.identity.job_id
        await self._dead_letter(record, failure.reason_code, failure.detail, job_id)
        status = self._status(
            ctx, JobState.FAILED, Verdict.ERROR, (failure.reason_code,), failure.detail, now_ms()
        )
        await self._send_all([(self.settings.topics.status, status)], job_id)
        self.ledger.put(
            self.stage.name,
            job_id,
            StageOutcome(failed_reason_code=failure.reason_code).SerializeToString(),
        )
        log.error(
            "failed",
            extra={"job_id": job_id, "reason_code": failure.reason_code, "error": failure.detail},
        )

    async def _dead_letter(
        self,
        record: ConsumerRecord[bytes, bytes],
        reason_code: str,
        error: str,
        job_id: str | None,
    ) -> None:
        headers = [
            (DLQ_REASON, reason_code.encode()),
            (DLQ_ERROR, error[:1000].encode()),
            (DLQ_STAGE, self.stage.name.encode()),
            (DLQ_TOPIC, record.topic.encode()),
            (DLQ_PARTITION, str(record.partition).encode()),
            (DLQ_OFFSET, str(record.offset).encode()),
        ]
        if job_id:
            headers.append((DLQ_JOB_ID, job_id.encode()))
        original = [(k, v) for k, v in record.headers or () if not k.startswith("alive-dlq-")]
        await self.producer.send_and_wait(
            self.settings.topics.dlq, record.value, key=record.key, headers=original + headers
        )
        self.metrics.dead_lettered.labels(self.stage.name).inc()
        log.warning("dead-lettered", extra={"reason_code": reason_code, **_coords(record)})

    def _status(
        self,
        ctx: StageContext,
        state: JobState.ValueType,
        verdict: Verdict.ValueType,
        reasons: Sequence[str],
        detail: str,
        at_ms: int,
    ) -> StatusEvent:
        return StatusEvent(
            job_id=ctx.identity.job_id,
            request_id=ctx.identity.request_id,
            creator_id=ctx.identity.creator_id,
            state=state,
            stage=self.stage.name,
            verdict=verdict,
            reason_codes=reasons,
            detail=detail,
            at_ms=at_ms,
            stage_started_at_ms=ctx.started_at_ms,
        )

    async def _send_all(self, events: Sequence[tuple[str, Message]], key: str) -> None:
        headers = headers_with_trace()
        sends = [
            await self.producer.send(
                topic, event.SerializeToString(), key=key.encode(), headers=headers
            )
            for topic, event in events
        ]
        await asyncio.gather(*sends)

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

    def _count(self, outcome: str) -> None:
        self.metrics.events_out.labels(self.stage.name, outcome).inc()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: StageRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._runner.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info(
            "partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)}
        )


def _coords(record: ConsumerRecord[bytes, bytes]) -> dict[str, object]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _span_coords(record: ConsumerRecord[bytes, bytes]) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.source.name": record.topic,
        "messaging.kafka.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
    }


__all__ = ["JobIdentity", "OffsetTracker", "StageRunner"]
