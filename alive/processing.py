"""What happens to one consumed event, with no Kafka client in sight.

``EventProcessor.handle`` decodes a record, finds its job, skips a job that was erased, that
the stage already finished (the stage ledger) or that was cancelled, runs the stage with the
retry policy and hands every message the outcome makes (the output, status, veto, dead
letter) to a ``Sink``. The runner
(alive/runner.py) gives it a Kafka producer as the sink; alive_tools.testing.StageHarness
gives it a list. The pure builders below make those messages.

Decided, then sent. A pass, veto or failure is first recorded in the stage ledger
(``StageLedger.decide``: created once, per stage and job, in the shared blob store), then
sent, then marked sent. The record (a ``StageOutcome``) holds the outcome and its status
event, and every send is made from the record alone (``_events``), so:

- two replicas handed the same event both process it, but only one record is created; the
  other reads it and sends the winner's events instead of its own (its own blobs stay
  unreferenced). Downstream sees one result, sent once or more, and its own ledger makes a
  repeat harmless;
- a crash between record and send strands nothing: the redelivered event finds a record
  without its sent mark and sends the recorded events again (outcome ``resent``);
- a record marked sent makes a redelivered event a ``duplicate``; a cancelled job whose
  record was never sent is left cancelled.

A record never holds the prompt (docs/privacy.md): a pass's output that a later stage reads
the prompt from gets it from the job at hand, or, when an old record is sent again, from the
job's prompt blob (``prompt_ref``, checked against its sha256).

Holds and cancels record nothing (a held job's decision comes back as an event of its own).
An I/O error on the ledger is retried with the retry policy's backoff; when it lasts, the
event is left uncommitted (the runner stops) rather than failed, since no job is at fault.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from google.protobuf.message import Message
from opentelemetry import trace

from alive.attestation import Keyring
from alive.blobs import StageLedger, output_key
from alive.erasure import delete_job_outputs
from alive.jobs import MAX_ID_CHARS, dead_letter_prefix, valid_id
from alive.pipeline import DLQ, PIPELINE, STATUS, VETOES, StageSpec, Topic
from alive.reasons import Finding, ReasonCode
from alive.settings import ServiceSettings, StageSettings
from alive.stage import (
    Cancelled,
    CancelToken,
    Hold,
    JobIdentity,
    PermanentError,
    Stage,
    StageContext,
    TransientError,
    Veto,
)
from alive.telemetry import StageMetrics, context_from_headers, headers_with_trace, now_ms
from alive.v1.events_pb2 import (
    Job,
    JobState,
    Progress,
    StageOutcome,
    StageRecord,
    StatusEvent,
    Verdict,
    VetoEvent,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("alive.runner")

Headers = Sequence[tuple[str, bytes]]
_T = TypeVar("_T")

# The ledger's reads and writes have threads of their own: on the default pool (six threads
# on two cores) a look-up could queue behind the stage's model work, such as the four checks
# a video checkpoint runs at once for each of its jobs.
_LEDGER_THREADS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="ledger-io")


async def _on_ledger_thread(call: Callable[..., _T], *args: Any) -> _T:
    """``call(*args)`` on the ledger's threads, in the caller's context (its trace)."""
    context = contextvars.copy_context()
    work = functools.partial(context.run, call, *args)
    return await asyncio.get_running_loop().run_in_executor(_LEDGER_THREADS, work)


# Headers on dead-lettered events (docs/topics.md).
DLQ_REASON = "alive-dlq-reason-code"
DLQ_ERROR = "alive-dlq-error"
DLQ_STAGE = "alive-dlq-stage"
DLQ_TOPIC = "alive-dlq-original-topic"
DLQ_PARTITION = "alive-dlq-original-partition"
DLQ_OFFSET = "alive-dlq-original-offset"
DLQ_JOB_ID = "alive-dlq-job-id"
DLQ_PAYLOAD_REF = "alive-dlq-payload-ref"
DLQ_PAYLOAD_SHA256 = "alive-dlq-payload-sha256"
DLQ_PAYLOAD_ERROR = "alive-dlq-payload-error"
# Room left under the producer's size limit for a record's batch framing.
_FRAMING_BYTES = 16 * 1024


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


class OutputTooLarge(Exception):
    """A record is over the size a producer may send: that record's fault, not Kafka's."""


class Sink(Protocol):
    async def send(self, records: Sequence[Outbound]) -> None:
        """Returns once every record is acknowledged; raises OutputTooLarge (before sending
        any) for a record over the size limit, and any other error if one is refused."""


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
    spec: StageSpec,
    identity: JobIdentity,
    veto: Veto,
    scores: Mapping[str, float],
    at_ms: int,
    versions: Mapping[str, str] | None = None,
) -> VetoEvent:
    return VetoEvent(
        job_id=identity.job_id,
        checkpoint=spec.name,
        reason_codes=veto.reason_codes,
        scores={**scores, **veto.scores},
        detail=veto.detail,
        at_ms=at_ms,
        versions=versions or {},
    )


def dead_letter(
    record: Record,
    dlq_topic: str,
    stage_name: str,
    finding: Finding,
    job_id: str | None,
    payload_ref: str | None = None,
    payload_sha256: str | None = None,
    payload_error: str | None = None,
) -> Outbound:
    """A reference to the record, with why, all in headers; the record's value is never in
    the letter (it may hold a prompt: docs/privacy.md).

    ``payload_ref`` names the blob holding the record's value as it came, and
    ``payload_sha256`` its digest: what a replay sends again to DLQ_TOPIC with the letter's
    key. Without them (the store refused the copy: ``payload_error`` says why) the letter
    still names the record by topic, partition and offset. The record's own headers are not
    kept.
    """
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
    if payload_ref is not None:
        headers.append((DLQ_PAYLOAD_REF, payload_ref.encode()))
    if payload_sha256 is not None:
        headers.append((DLQ_PAYLOAD_SHA256, payload_sha256.encode()))
    if payload_error is not None:
        headers.append((DLQ_PAYLOAD_ERROR, payload_error[:500].encode()))
    return Outbound(dlq_topic, None, record.key, headers)


def without_prompt(job: Job) -> Job:
    """A copy of the job without its prompt (``prompt_ref`` stays, and with it the digest
    the prompt checkpoint attested): what the ledger keeps, and what leaves the last stage
    that reads the prompt."""
    stripped = Job()
    stripped.CopyFrom(job)
    stripped.ClearField("prompt")
    return stripped


def record_size(record: Outbound) -> int:
    """Bytes of the record's key, value and headers: what Kafka's size limit counts."""
    headers = sum(len(k.encode()) + len(v) for k, v in record.headers)
    return len(record.key or b"") + len(record.value or b"") + headers


def check_sizes(records: Sequence[Outbound], max_bytes: int) -> None:
    """Raises OutputTooLarge if any record would be over ``max_bytes`` with its framing."""
    for record in records:
        size = record_size(record) + _FRAMING_BYTES
        if size > max_bytes:
            raise OutputTooLarge(
                f"a record for {record.topic} is {size} bytes; the limit is {max_bytes}"
            )


class _Seen(enum.Enum):
    """What the ledger says of a job at a stage, short of a decision still to send."""

    NEW = "new"
    SENT = "sent"
    CANCELLED = "cancelled"
    ERASED = "erased"


@dataclass(frozen=True)
class _Outcome:
    """What processing one event came to, before anything is produced."""

    passed: Job | None = None
    veto: Veto | None = None
    failure: PermanentError | None = None
    cancelled: bool = False
    hold: Hold | None = None


class ProgressReporter:
    """A stage's progress on one job, sent on alive.status as reports that are not
    transitions: at most one per ``progress_interval_s``, and always the last step. Progress
    is for people watching; a report Kafka refuses is logged and dropped."""

    def __init__(self, processor: EventProcessor, identity: JobIdentity, started_ms: int) -> None:
        self._processor = processor
        self._identity = identity
        self._started_ms = started_ms
        self._interval_s = processor.stage.settings.progress_interval_s
        self._last = -float("inf")

    async def __call__(self, done: int, total: int, unit: str) -> None:
        now = time.monotonic()
        if done < total and now - self._last < self._interval_s:
            return
        self._last = now
        identity = self._identity
        report = StatusEvent(
            job_id=identity.job_id,
            request_id=identity.request_id,
            creator_id=identity.creator_id,
            stage=self._processor.spec.name,
            at_ms=now_ms(),
            stage_started_at_ms=self._started_ms,
            progress=Progress(done=done, total=total, unit=unit),
        )
        try:
            await self._processor.send_events(identity, [(STATUS, report)])
        except Exception as exc:
            log.warning(
                "progress report not sent", extra={"job_id": identity.job_id, "error": str(exc)}
            )


class EventProcessor:
    """Takes one stage's records one at a time per job; the caller serialises per key."""

    def __init__(
        self,
        stage: Stage[Any, Any],
        settings: ServiceSettings,
        sink: Sink,
        ledger: StageLedger,
        metrics: StageMetrics,
        keyring: Keyring,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.stage = stage
        self.keyring = keyring
        self.spec = stage.spec
        self.settings = settings
        self.sink = sink
        self.ledger = ledger
        self.metrics = metrics
        self.retry = RetryPolicy.of(stage.settings)
        self._sleep = sleep
        self._dlq = settings.topic(DLQ)

    async def handle(self, record: Record) -> None:
        """Takes one record to its end: an output, a veto, a failure or a dead letter. Raises
        only when the sink refuses a message for another reason than its size (Kafka is
        unavailable) or the ledger stays unreachable through the retries: then nothing may be
        committed."""
        spec = self.spec
        started_ms, t0 = now_ms(), time.perf_counter()
        self.metrics.events_in.labels(spec.name, record.topic).inc()
        read = self._read(record)
        if isinstance(read, Finding):
            await self._dead_letter(record, read)
            self._count(
                "undecodable" if read.code == ReasonCode.UNDECODABLE_EVENT else "dead_lettered"
            )
            return
        event, identity = read
        with tracer.start_as_current_span(
            spec.name,
            context=context_from_headers(record.headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={"alive.job_id": identity.job_id, **_span_coords(record)},
        ) as span:
            job_id = identity.job_id
            try:
                seen = await self._look_up(job_id)
            except OSError:
                raise  # the store stays unreachable: nothing is committed, all is redelivered
            except Exception as exc:  # the record names a job the ledger cannot look up
                log.exception("ledger lookup failed", extra={"job_id": job_id})
                lookup = Finding(ReasonCode.UNPROCESSABLE_EVENT, f"ledger: {_described(exc)}")
                await self._dead_letter(record, lookup)
                self._count("dead_lettered")
                return
            if seen is _Seen.ERASED:  # a replay of an erased job's events restores nothing
                log.info("erased; skipping", extra={"job_id": job_id})
                self._count("erased")
                return
            if seen is _Seen.SENT:
                log.info("already processed; skipping", extra={"job_id": job_id})
                self._count("duplicate")
                return
            if seen is _Seen.CANCELLED:  # its CANCELLED status is out; nothing more is made
                log.info("cancelled; skipping", extra={"job_id": job_id})
                self._count("cancelled")
                return
            if isinstance(seen, StageOutcome):  # decided, but perhaps never sent: send it now
                log.info("decided before; sending its events again", extra={"job_id": job_id})
                await self._send(record, identity, await self._with_prompt(seen))
                self._count("resent")
                return
            ctx = StageContext(
                identity=identity,
                attempt=1,
                started_at_ms=started_ms,
                cancelled=lambda: self._stopped(job_id),
                report_progress=ProgressReporter(self, identity, started_ms),
            )
            outcome = (
                self._check_attestations(event)
                or self._check_prompt(event)
                or await self._process_watched(event, ctx)
            )
            decision = self._decision(outcome, ctx)
            if decision is None:  # held or stopped by a cancel: nothing to record
                if await self._erased_meanwhile(job_id):
                    await self._discard_erased(job_id)
                    return
                await self._emit_unrecorded(outcome, ctx)
                decided = StageOutcome()
            else:
                sent = await self._decide_and_send(record, identity, decision, ctx)
                if sent is None:  # erased while the stage worked on it
                    await self._discard_erased(job_id)
                    return
                decided = sent
            if decided.HasField("failed_reason_code"):
                span.set_status(trace.Status(trace.StatusCode.ERROR, decided.failed_reason_code))
        self.metrics.latency.labels(spec.name).observe(time.perf_counter() - t0)
        if decided.HasField("passed") and decided.passed.submitted_at_ms > 0:
            age_s = (now_ms() - decided.passed.submitted_at_ms) / 1000
            self.metrics.job_age.labels(spec.name).observe(max(age_s, 0.0))

    async def _look_up(self, job_id: str) -> _Seen | StageOutcome:
        """What the ledger knows of the job at this stage: nothing yet (NEW), erased, decided
        and sent (SENT), cancelled by its creator, or a decision whose events may not have gone out
        (the recorded StageOutcome). Its reads are one call on the ledger's threads: a thread
        hop per read kept a busy stage's next event waiting on the others' (docs/performance.md)."""
        return await self._ledger_io(self._standing, job_id)

    def _standing(self, job_id: str) -> _Seen | StageOutcome:
        stage, ledger = self.spec.name, self.ledger
        # The erasure mark first: an erased job has no ledger entries left to say it ended.
        if ledger.is_erased(job_id):
            return _Seen.ERASED
        standing = ledger.get(stage, job_id)
        decided = None if standing is None else StageOutcome.FromString(standing)
        # A record without a status was written after its events went out (before decisions
        # were recorded first), as is one marked sent.
        if decided is not None and (
            not decided.HasField("status") or ledger.was_sent(stage, job_id)
        ):
            return _Seen.SENT
        if ledger.is_cancelled(job_id):
            return _Seen.CANCELLED
        return _Seen.NEW if decided is None else decided

    async def _ledger_io(self, call: Callable[..., _T], *args: Any) -> _T:
        """A ledger call, off the event loop; an I/O error is retried with the retry
        policy's backoff and the last one raised (the runner then stops uncommitted)."""
        for attempt in range(1, self.retry.max_attempts + 1):
            try:
                return await _on_ledger_thread(call, *args)
            except OSError as exc:
                if attempt == self.retry.max_attempts:
                    raise
                delay = self.retry.delay_s(attempt, random.random())
                self.metrics.errors.labels(self.spec.name, "transient").inc()
                log.warning(
                    "ledger I/O error; retrying",
                    extra={"attempt": attempt, "error": str(exc), "retry_in_s": round(delay, 2)},
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the last attempt raises")

    def _read(self, record: Record) -> tuple[Message, JobIdentity] | Finding:
        """The event and its job, or why the record names no job this stage can work on.
        Hostile bytes and fields end here, as a finding, never as an exception."""
        try:
            event = self.stage.input_type().FromString(record.value or b"")
        except Exception as exc:  # DecodeError, and whatever else malformed bytes provoke
            return Finding(ReasonCode.UNDECODABLE_EVENT, _described(exc))
        try:
            identity = self.stage.identify(event)
        except PermanentError as exc:
            return exc.finding
        except Exception as exc:
            log.exception("identifying the event failed", extra=coords(record))
            return Finding(ReasonCode.UNPROCESSABLE_EVENT, _described(exc))
        if not valid_id(identity.job_id):
            shown = repr(identity.job_id[:MAX_ID_CHARS])
            return Finding(ReasonCode.INVALID_JOB_ID, f"{shown} is not a job id")
        return event, identity

    def _stopped(self, job_id: str) -> bool:
        """Whether a stage at work on the job should stop: it was cancelled or erased."""
        return self.ledger.is_cancelled(job_id) or self.ledger.is_erased(job_id)

    async def _erased_meanwhile(self, job_id: str) -> bool:
        try:
            return await _on_ledger_thread(self.ledger.is_erased, job_id)
        except Exception:  # the store failing now fails the emit next, as before
            return False

    async def _discard_erased(self, job_id: str) -> None:
        """The job was erased while the stage worked on it: what the stage made is deleted
        and nothing is sent or recorded."""
        deleted = await asyncio.to_thread(delete_job_outputs, self.stage.blobs, job_id)
        log.info(
            "erased while processed; outputs deleted",
            extra={"job_id": job_id, "deleted": sum(deleted.values())},
        )
        self._count("erased")

    def _check_prompt(self, event: Message) -> _Outcome | None:
        """A veto when a stage that reads the prompt gets a job without one: the prompt's
        attestation is then checked against ``prompt_ref`` alone, which a stage that acts on
        the prompt must not accept."""
        if self.spec.reads_prompt and isinstance(event, Job) and not event.prompt:
            missing = Finding(ReasonCode.ATTESTATION_INVALID, "the job carries no prompt")
            self.metrics.attestation_failures.labels(self.spec.name, "", missing.code).inc()
            return _Outcome(veto=Veto((missing,)))
        return None

    def _check_attestations(self, event: Message) -> _Outcome | None:
        """A veto when an attestation the stage requires is missing or does not hold: the
        event was forged or tampered with, so the stage does not act on it."""
        if not self.spec.requires:
            return None
        try:
            job = self.stage.attested_job(event)
        except PermanentError as exc:
            return _Outcome(failure=exc)
        if job is None:
            failure = Finding(ReasonCode.ATTESTATION_MISSING, "no job to check attestations on")
            self.metrics.attestation_failures.labels(self.spec.name, "", failure.code).inc()
            return _Outcome(veto=Veto((failure,)))
        check = self.keyring.check(job, self.spec.requires)
        if check is None:
            return None
        self.metrics.attestation_failures.labels(
            self.spec.name, check.required_stage, check.finding.code
        ).inc()
        log.error(
            "attestation check failed",
            extra={
                "job_id": job.job_id,
                "reason_code": check.finding.code,
                "error": check.finding.detail,
            },
        )
        return _Outcome(veto=Veto((check.finding,)))

    async def _emit_unrecorded(self, outcome: _Outcome, ctx: StageContext) -> None:
        if outcome.hold is not None:
            await self._emit_hold(outcome.hold, ctx)
            self._count("held")
        else:  # stopped part-way by a cancel: its CANCELLED status is already out
            log.info("cancelled while processing", extra={"job_id": ctx.identity.job_id})
            self._count("cancelled")

    async def _process_watched(self, event: Message, ctx: StageContext) -> _Outcome:
        """Processes the event while watching for its job's cancel mark; either, or the event
        being given up (this task cancelled), sets the context's cancel token so that the
        stage's thread work stops at its next check."""
        token = ctx.cancel_token
        watch = asyncio.create_task(self._watch_cancel_mark(ctx.identity.job_id, token))
        try:
            return await self._process_with_retries(event, ctx)
        except asyncio.CancelledError:
            token.cancel("the event was given up: it is redelivered")
            raise
        finally:
            watch.cancel()

    async def _watch_cancel_mark(self, job_id: str, token: CancelToken) -> None:
        interval = self.stage.settings.cancel_check_s
        while True:
            await asyncio.sleep(interval)
            try:
                if await _on_ledger_thread(self._stopped, job_id):
                    token.cancel("cancelled or erased")
                    return
            except OSError as exc:  # the next look may work; the job goes on meanwhile
                log.warning("cancel mark unreadable", extra={"job_id": job_id, "error": str(exc)})

    async def _process_with_retries(self, event: Message, ctx: StageContext) -> _Outcome:
        for attempt in range(1, self.retry.max_attempts + 1):
            ctx.attempt = attempt
            if ctx.cancel_token.is_cancelled():  # cancelled while waiting to retry
                return _Outcome(cancelled=True)
            try:
                result = await self.stage.process(event, ctx)
            except (TransientError, OSError) as exc:
                # OSError: the store or the network failed (a blob the store refuses is a
                # BlobError, which stages turn into their own codes); a retry may help.
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
            except Cancelled:
                return _Outcome(cancelled=True)
            except Exception as exc:  # a bug or an unexpected input: never drop the job
                log.exception("stage raised", extra={"job_id": ctx.identity.job_id})
                self.metrics.errors.labels(self.spec.name, "permanent").inc()
                return _Outcome(failure=PermanentError(ReasonCode.STAGE_ERROR, _described(exc)))
            if isinstance(result, Veto):
                return _Outcome(veto=result)
            if isinstance(result, Hold):
                return _Outcome(hold=result)
            return _Outcome(passed=result)
        raise AssertionError("unreachable: the last attempt returns")

    def _decision(self, outcome: _Outcome, ctx: StageContext) -> StageOutcome | None:
        """The ledger record of a pass, veto or failure: the outcome and the status it sends
        (None for a hold or a cancel, which record nothing). A decision whose events would be
        over Kafka's size limit is an OUTPUT_TOO_LARGE failure instead: checked now, since
        once recorded it must be sendable."""
        if outcome.passed is not None:
            decision = self._pass(outcome.passed, ctx)
        elif outcome.veto is not None:
            decision = self._veto(outcome.veto, ctx)
        elif outcome.failure is not None:
            return self._failure(outcome.failure, ctx)
        else:
            return None
        headers, key = headers_with_trace(), ctx.identity.job_id.encode()
        events = [
            Outbound(self.settings.topic(topic), event.SerializeToString(), key, headers)
            for topic, event in self._events(decision)
        ]
        try:
            check_sizes(events, self.settings.kafka.max_request_size)
        except OutputTooLarge as exc:  # this job's output, not Kafka, is the problem
            return self._failure(PermanentError(ReasonCode.OUTPUT_TOO_LARGE, str(exc)), ctx)
        return decision

    def _pass(self, job: Job, ctx: StageContext) -> StageOutcome:
        spec, finished = self.spec, now_ms()
        # A pass that a person must look at before publishing is a REVIEW, with its reasons.
        verdict = Verdict.REVIEW if ctx.review else Verdict.PASS
        job.stages.append(
            StageRecord(
                stage=spec.name,
                verdict=verdict,
                started_at_ms=ctx.started_at_ms,
                finished_at_ms=finished,
                reason_codes=[f.code for f in ctx.review],
                scores=ctx.scores,
                versions=self.stage.versions(),
            )
        )
        if spec.attests is not None:
            attestation = self.keyring.attest(spec, job, verdict, self.stage.versions(), ctx.scores)
            job.attestations.append(attestation)
        status = status_event(spec, ctx, spec.passed_state, verdict, ctx.review, finished)
        if job.HasField("video"):
            status.video.CopyFrom(job.video)
        return StageOutcome(passed=job, status=status)

    def _veto(self, veto: Veto, ctx: StageContext) -> StageOutcome:
        spec, at = self.spec, now_ms()
        event = veto_event(spec, ctx.identity, veto, ctx.scores, at, self.stage.versions())
        status = status_event(spec, ctx, spec.veto_state, spec.veto_verdict, veto.findings, at)
        return StageOutcome(vetoed=event, status=status)

    def _failure(self, failure: PermanentError, ctx: StageContext) -> StageOutcome:
        status = status_event(
            self.spec, ctx, JobState.FAILED, Verdict.ERROR, (failure.finding,), now_ms()
        )
        return StageOutcome(failed_reason_code=failure.reason_code, status=status)

    def _events(self, decision: StageOutcome) -> list[tuple[Topic[Any], Message]]:
        """What a recorded decision sends (besides a failure's dead letter): made from the
        record alone, so every send of it sends the same."""
        if decision.HasField("passed"):
            output = self.stage.output(decision.passed)
            if isinstance(output, Job) and not PIPELINE.prompt_read_after(self.spec):
                output = without_prompt(output)  # no later stage reads it
            return [(self.spec.emits, output), (STATUS, decision.status)]
        if decision.HasField("vetoed"):
            return [(VETOES, decision.vetoed), (STATUS, decision.status)]
        return [(STATUS, decision.status)]

    async def _decide_and_send(
        self, record: Record, identity: JobIdentity, decision: StageOutcome, ctx: StageContext
    ) -> StageOutcome | None:
        """Records the decision unless another replica recorded one for the job first, then
        sends the one that stands; returns it. None, recording and sending nothing, when the
        job was erased while the stage worked on it."""
        mine = _recorded(decision).SerializeToString()
        standing = await self._ledger_io(self._decide_unless_erased, identity.job_id, mine)
        if standing is None:
            return None
        if standing != mine:
            log.info(
                "another replica decided first; sending its decision",
                extra={"job_id": identity.job_id},
            )
            decided = StageOutcome.FromString(standing)
            if decided.HasField("passed") and decision.HasField("passed"):
                decided.passed.prompt = decision.passed.prompt  # the same job's prompt
            await self._send(record, identity, decided)
            self._count("resent")
            return decided
        await self._send(record, identity, decision)
        self._report(decision, ctx)
        return decision

    def _decide_unless_erased(self, job_id: str, record: bytes) -> bytes | None:
        """The ledger's decide, unless the job's erasure mark is there: one call on the
        ledger's threads (each hop delayed the next batch of a batched stage)."""
        if self.ledger.is_erased(job_id):
            return None
        return self.ledger.decide(self.spec.name, job_id, record)

    async def _with_prompt(self, decided: StageOutcome) -> StageOutcome:
        """A recorded decision with its job's prompt back, when its output carries it to a
        later stage: read from the job's prompt blob (the record keeps none)."""
        job = decided.passed
        if not (decided.HasField("passed") and job.HasField("prompt_ref")):
            return decided
        if not PIPELINE.prompt_read_after(self.spec):
            return decided
        prompt = await asyncio.to_thread(self.stage.blobs.get_bytes, job.prompt_ref)
        job.prompt = prompt.decode()
        return decided

    async def _send(self, record: Record, identity: JobIdentity, decision: StageOutcome) -> None:
        """Sends a recorded decision's events (a failure's dead letter first, on its own),
        then marks them sent."""
        if decision.HasField("failed_reason_code"):
            # The code as recorded: a stage outside this package may use codes of its own.
            code = cast(ReasonCode, decision.failed_reason_code)
            finding = Finding(code, decision.status.detail)
            await self._dead_letter(record, finding, identity.job_id)
        await self.send_events(identity, self._events(decision))
        await self._ledger_io(self.ledger.mark_sent, self.spec.name, identity.job_id)

    def _report(self, decision: StageOutcome, ctx: StageContext) -> None:
        """Metrics and the log line of a decision this replica made and sent."""
        job_id, status = ctx.identity.job_id, decision.status
        if decision.HasField("passed"):
            self._count("passed")
            log.info(
                "passed", extra={"job_id": job_id, "duration_ms": status.at_ms - ctx.started_at_ms}
            )
        elif decision.HasField("vetoed"):
            self._count("vetoed" if self.spec.veto_verdict == Verdict.VETO else "rejected")
            for reason in decision.vetoed.reason_codes:
                self.metrics.vetoes.labels(self.spec.name, reason).inc()
            log.info("vetoed", extra={"job_id": job_id, "reason_codes": list(status.reason_codes)})
        else:
            self._count("failed")
            log.error(
                "failed",
                extra={
                    "job_id": job_id,
                    "reason_code": decision.failed_reason_code,
                    "error": status.detail,
                },
            )

    async def _emit_hold(self, hold: Hold, ctx: StageContext) -> None:
        """The item for a person, and a status saying why the job waits (its state is
        unchanged). No ledger record: the decision comes back as an event of its own."""
        spec = self.spec
        if spec.holds is None:
            raise AssertionError(f"{spec.name} holds jobs but its spec names no topic")
        status = status_event(spec, ctx, spec.held_state, Verdict.REVIEW, hold.findings, now_ms())
        await self.send_events(ctx.identity, [(spec.holds, hold.item), (STATUS, status)])
        log.info(
            "held for a person",
            extra={"job_id": ctx.identity.job_id, "reason_codes": [f.code for f in hold.findings]},
        )

    async def _dead_letter(
        self, record: Record, finding: Finding, job_id: str | None = None
    ) -> None:
        """Keeps the record's value in the blob store, under the job's dead letters, and
        sends alive.dlq a reference to it (dead_letter)."""
        key = output_key(
            f"{dead_letter_prefix(job_id)}{self.spec.name}-{record.topic}-"
            f"{record.partition}-{record.offset}",
            "",
        )
        try:
            stored = await asyncio.to_thread(
                self.stage.blobs.put_bytes, key, record.value or b"", "application/octet-stream"
            )
        except Exception as exc:  # the store is down too: the reference is the coordinates
            log.warning("dead letter payload not stored", extra={"error": _described(exc)})
            letter = dead_letter(
                record, self._dlq, self.spec.name, finding, job_id, payload_error=_described(exc)
            )
        else:
            letter = dead_letter(
                record,
                self._dlq,
                self.spec.name,
                finding,
                job_id,
                payload_ref=stored.uri,
                payload_sha256=stored.sha256,
            )
        await self.sink.send([letter])
        self.metrics.dead_lettered.labels(self.spec.name).inc()
        log.warning("dead-lettered", extra={"reason_code": finding.code, **coords(record)})

    async def send_events(
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


def _recorded(decision: StageOutcome) -> StageOutcome:
    """The decision as the ledger keeps it: never with the prompt."""
    if not decision.HasField("passed"):
        return decision
    return StageOutcome(passed=without_prompt(decision.passed), status=decision.status)


def _described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def coords(record: Record) -> dict[str, object]:
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


def _span_coords(record: Record) -> dict[str, str | int]:
    return {
        "messaging.system": "kafka",
        "messaging.source.name": record.topic,
        "messaging.kafka.partition": record.partition,
        "messaging.kafka.message.offset": record.offset,
    }
