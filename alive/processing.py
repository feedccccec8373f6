"""What happens to one consumed event, with no Kafka client in sight.

``EventProcessor.handle`` decodes a record, finds its job, skips a job the stage already
finished (the stage ledger), runs the stage with the retry policy and hands every message
the outcome makes (the output, status, veto, dead letter) to a ``Sink``. The runner
(alive/runner.py) gives it a Kafka producer as the sink; alive_tools.testing.StageHarness
gives it a list. The pure builders below make those messages.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import DecodeError, Message
from opentelemetry import trace

from alive.blobs import StageLedger
from alive.pipeline import DLQ, STATUS, VETOES, StageSpec, Topic
from alive.reasons import Finding, ReasonCode
from alive.settings import ServiceSettings, StageSettings
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

Headers = Sequence[tuple[str, bytes]]

# Headers on dead-lettered events (docs/topics.md).
DLQ_REASON = "alive-dlq-reason-code"
DLQ_ERROR = "alive-dlq-error"
DLQ_STAGE = "alive-dlq-stage"
DLQ_TOPIC = "alive-dlq-original-topic"
DLQ_PARTITION = "alive-dlq-original-partition"
DLQ_OFFSET = "alive-dlq-original-offset"
DLQ_JOB_ID = "alive-dlq-job-id"


@dataclass(frozen=True)
class Record:
    """One consumed record, as processing needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()


@dataclass(frozen=True)
class Outbound:
    """One record to produce."""

    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers


class Sink(Protocol):
    async def send(self, records: Sequence[Outbound]) -> None:
        """Returns once every record is acknowledged; raises if any is refused."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors, up to ``max_attempts`` tries."""

    max_attempts: int
    base_s: float
    max_s: float

    @classmethod
    def of(cls, settings: StageSettings) -> RetryPolicy:
        return cls(settings.max_attempts, settings.retry_base_s, settings.retry_max_s)

    def delay_s(self, attempt: int, jitter: float) -> float:
        """Wait after failed ``attempt`` (1-based); ``jitter`` in [0, 1) spreads replicas
        so they do not retry in step."""
        backoff: float = min(self.max_s, self.base_s * 2 ** (attempt - 1))
        return backoff * (0.5 + jitter / 2)


def status_event(
    spec: StageSpec,
    ctx: StageContext,
    state: JobState.ValueType,
    verdict: Verdict.ValueType,
    findings: Sequence[Finding],
    at_ms: int,
) -> StatusEvent:
    identity = ctx.identity
    return StatusEvent(
        job_id=identity.job_id,
        request_id=identity.request_id,
        creator_id=identity.creator_id,
        state=state,
        stage=spec.name,
        verdict=verdict,
        reason_codes=[f.code for f in findings],
        detail="; ".join(f.detail for f in findings if f.detail),
        at_ms=at_ms,
        stage_started_at_ms=ctx.started_at_ms,
    )


def veto_event(
    spec: StageSpec, identity: JobIdentity, veto: Veto, scores: Mapping[str, float], at_ms: int
) -> VetoEvent:
    return VetoEvent(
        job_id=identity.job_id,
        checkpoint=spec.name,
        reason_codes=veto.reason_codes,
        scores={**scores, **veto.scores},
        detail=veto.detail,
        at_ms=at_ms,
    )


def dead_letter(
    record: Record, dlq_topic: str, stage_name: str, finding: Finding, job_id: str | None
) -> Outbound:
    """The record as it came, with why in headers (its own earlier alive-dlq-* dropped)."""
    headers = [
        (DLQ_REASON, finding.code.encode()),
        (DLQ_ERROR, finding.detail[:1000].encode()),
        (DLQ_STAGE, stage_name.encode()),
        (DLQ_TOPIC, record.topic.encode()),
        (DLQ_PARTITION, str(record.partition).encode()),
        (DLQ_OFFSET, str(record.offset).encode()),
    ]
    if job_id:
        headers.append((DLQ_JOB_ID, job_id.encode()))
    original = [(k, v) for k, v in record.headers if not k.startswith("alive-dlq-")]
    return Outbound(dlq_topic, record.value, record.key, original + headers)


@dataclass(frozen=True)
class _Outcome:
    """What processing one event came to, before anything is produced."""

    passed: Job | None = None
    veto: Veto | None = None
    failure: PermanentError | None = None


class EventProcessor:
    """Takes one stage's records one at a time per job; the caller serialises per key."""

    def __init__(
        self,
        stage: Stage[Any, Any],
        settings: ServiceSettings,
        sink: Sink,
        ledger: StageLedger,
        metrics: StageMetrics,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.stage = stage
        self.spec = stage.spec
        self.settings = settings
        self.sink = sink
        self.ledger = ledger
        self.metrics = metrics
        self.retry = RetryPolicy.of(stage.settings)
        self._sleep = sleep
        self._dlq = settings.topic(DLQ)

    async def handle(self, record: Record) -> None:
        spec = self.spec
        started_ms, t0 = now_ms(), time.perf_counter()
        self.metrics.events_in.labels(spec.name, record.topic).inc()
        try:
            event = self.stage.input_type().FromString(record.value or b"")
        except DecodeError as exc:
            await self._dead_letter(record, Finding(ReasonCode.UNDECODABLE_EVENT, str(exc)))
            self._count("undecodable")
            return
        try:
            identity = self.stage.identify(event)
            if not StageLedger.valid_job_id(identity.job_id):
                raise PermanentError(
                    ReasonCode.INVALID_JOB_ID, f"{identity.job_id!r} is not a job id"
                )
        except PermanentError as exc:
            await self._dead_letter(record, exc.finding)
            self._count("dead_lettered")
            return
        with tracer.start_as_current_span(
            spec.name,
            context=context_from_headers(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"alive.job_id": identity.job_id, **_span_coords(record)},
        ) as span:
            if self.ledger.get(spec.name, identity.job_id) is not None:
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
                self._count("vetoed" if spec.veto_verdict == Verdict.VETO else "rejected")
            elif outcome.failure is not None:
                span.set_status(trace.Status(trace.StatusCode.ERROR, outcome.failure.reason_code))
                await self._fail(record, outcome.failure, ctx)
                self._count("failed")
        self.metrics.latency.labels(spec.name).observe(time.perf_counter() - t0)

    async def _process_with_retries(self, event: Message, ctx: StageContext) -> _Outcome:
        for attempt in range(1, self.retry.max_attempts + 1):
            ctx.attempt = attempt
            try:
                result = await self.stage.process(event, ctx)
            except TransientError as exc:
                self.metrics.errors.labels(self.spec.name, "transient").inc()
                if attempt == self.retry.max_attempts:
                    return _Outcome(failure=PermanentError(ReasonCode.RETRIES_EXHAUSTED, str(exc)))
                delay = self.retry.delay_s(attempt, random.random())
                log.warning(
                    "transient error; retrying",
                    extra={
                        "job_id": ctx.identity.job_id,
                        "attempt": attempt,
                        "error": str(exc),
                        "retry_in_s": round(delay, 2),
                    },
                )
                await self._sleep(delay)
                continue
            except PermanentError as exc:
                self.metrics.errors.labels(self.spec.name, "permanent").inc()
                return _Outcome(failure=exc)
            except Exception as exc:  # a bug or an unexpected input: never drop the job
                log.exception("stage raised", extra={"job_id": ctx.identity.job_id})
                self.metrics.errors.labels(self.spec.name, "permanent").inc()
                detail = f"{type(exc).__name__}: {exc}"[:500]
                return _Outcome(failure=PermanentError(ReasonCode.STAGE_ERROR, detail))
            if isinstance(result, Veto):
                return _Outcome(veto=result)
            return _Outcome(passed=result)
        raise AssertionError("unreachable: the last attempt returns")

    async def _emit_pass(self, job: Job, ctx: StageContext) -> None:
        spec, finished = self.spec, now_ms()
        job.stages.append(
            StageRecord(
                stage=spec.name,
                verdict=Verdict.PASS,
                started_at_ms=ctx.started_at_ms,
                finished_at_ms=finished,
                scores=ctx.scores,
            )
        )
        status = status_event(spec, ctx, spec.passed_state, Verdict.PASS, (), finished)
        if job.HasField("video"):
            status.video.CopyFrom(job.video)
        await self._send(ctx.identity, [(spec.emits, job), (STATUS, status)])
        self.ledger.put(
            spec.name, ctx.identity.job_id, StageOutcome(passed=job).SerializeToString()
        )
        log.info(
            "passed",
            extra={"job_id": ctx.identity.job_id, "duration_ms": finished - ctx.started_at_ms},
        )

    async def _emit_veto(self, veto: Veto, ctx: StageContext) -> None:
        spec, at = self.spec, now_ms()
        event = veto_event(spec, ctx.identity, veto, ctx.scores, at)
        status = status_event(spec, ctx, spec.veto_state, spec.veto_verdict, veto.findings, at)
        await self._send(ctx.identity, [(VETOES, event), (STATUS, status)])
        self.ledger.put(
            spec.name, ctx.identity.job_id, StageOutcome(vetoed=event).SerializeToString()
        )
        for reason in veto.reason_codes:
            self.metrics.vetoes.labels(spec.name, reason).inc()
        log.info(
            "vetoed", extra={"job_id": ctx.identity.job_id, "reason_codes": list(veto.reason_codes)}
        )

    async def _fail(self, record: Record, failure: PermanentError, ctx: StageContext) -> None:
        job_id = ctx.identity.job_id
        await self._dead_letter(record, failure.finding, job_id)
        status = status_event(
            self.spec, ctx, JobState.FAILED, Verdict.ERROR, (failure.finding,), now_ms()
        )
        await self._send(ctx.identity, [(STATUS, status)])
        self.ledger.put(
            self.spec.name,
            job_id,
            StageOutcome(failed_reason_code=failure.reason_code).SerializeToString(),
        )
        log.error(
            "failed",
            extra={"job_id": job_id, "reason_code": failure.reason_code, "error": failure.detail},
        )

    async def _dead_letter(
        self, record: Record, finding: Finding, job_id: str | None = None
    ) -> None:
        await self.sink.send([dead_letter(record, self._dlq, self.spec.name, finding, job_id)])
        self.metrics.dead_lettered.labels(self.spec.name).inc()
        log.warning("dead-lettered", extra={"reason_code": finding.code, **coords(record)})

    async def _send(
        self, identity: JobIdentity, events: Sequence[tuple[Topic[Any], Message]]
    ) -> None:
        """Produces the events keyed by the job, carrying the trace; all acknowledged or none
        counts as sent."""
        headers, key = headers_with_trace(), identity.job_id.encode()
        await self.sink.send(
            [
                Outbound(self.settings.topic(topic), event.SerializeToString(), key, headers)
                for topic, event in events
            ]
        )

    def _count(self, outcome: str) -> None:
        self.metrics.events_out.labels(self.spec.name, outcome).inc()


def coords(record: Record) -> dict[str, object]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _span_coords(record: Record) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.source.name": record.topic,
        "messaging.kafka.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
    }
