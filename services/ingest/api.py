"""Alive's gRPC API (protos/alive/v1/api.proto; contract in docs/api.md).

Every call is authenticated (services/ingest/auth.py): the creator is the bearer token's,
and a job of another creator is NOT_FOUND, as an unknown one is. Submit validates with the
same code as the Kafka intake, stores the upload in the request's upload area and publishes
an ImagePromptRequest to alive.requests plus a SUBMITTED status, once per creator and request
id across all ingest replicas (a request record created once in the blob store, before the
request is sent; a retry, or a racing Submit on another replica, gets that job). Get and
Watch serve the StatusView (a bounded cache over alive.jobs). Publish hands a READY job to
the review service. Cancel ends a job. Report publishes a user's report of a published video
to alive.reports (the review web app counts them), once per reporter and video. Erase
deletes everything about a job or a creator (alive/erasure.py) and answers with the receipt.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, NoReturn

import grpc
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from alive.blobs import REQUEST_RECORDS, BlobError, BlobStore, StageLedger, output_key
from alive.dependencies import BLOB_STORE, BROKER, TOPICS, DependencyMonitor
from alive.erasure import ErasedJob, Eraser, ErasureStep, Receipt, indexed_job
from alive.jobs import is_terminal, upload_area, valid_id
from alive.locks import KeyedLocks
from alive.pipeline import PUBLISH_REQUESTS, REPORTS, REQUESTS, REVIEW, STATUS, UNPUBLISHED, Topic
from alive.reasons import REASON_TRAILER, REPORT_REASONS, RETRY_AFTER_TRAILER, ReasonCode
from alive.settings import ServiceSettings
from alive.telemetry import headers_with_trace, now_ms
from alive.v1 import api_pb2, api_pb2_grpc
from alive.v1.api_pb2 import (
    CancelJobRequest,
    EraseRequest,
    ErasureReceipt,
    GetJobRequest,
    JobView,
    PublishJobRequest,
    ReportRequest,
    ReportResponse,
    SubmitRequest,
    SubmitResponse,
    WatchRequest,
)
from alive.v1.events_pb2 import (
    ImagePromptRequest,
    JobState,
    PublishRequest,
    StageOutcome,
    StatusEvent,
    Unpublished,
    UserReport,
    Verdict,
)
from services.ingest.auth import Caller, Scope, TokenVerifier, Unauthenticated
from services.ingest.settings import IngestSettings
from services.ingest.stage import JobIds
from services.ingest.status_view import JobGone, JobStatesUnavailable, StatusView
from services.ingest.validation import (
    InvalidInput,
    check_ids,
    normalise_prompt,
    resolve_output,
    validate_photo,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("alive.api")
API_SERVICE = api_pb2.DESCRIPTOR.services_by_name["Alive"].full_name
# What Submit needs to queue a job: while one is down it answers UNAVAILABLE at once.
QUEUE_DEPENDENCIES = (BROKER, TOPICS, BLOB_STORE)


class AliveApi(api_pb2_grpc.AliveServicer):
    def __init__(
        self,
        settings: IngestSettings,
        common: ServiceSettings,
        blobs: BlobStore,
        ledger: StageLedger,
        producer: AIOKafkaProducer,
        view: StatusView,
        job_ids: JobIds,
        tokens: TokenVerifier,
        eraser: Eraser,
        *,
        dependencies: DependencyMonitor,
    ) -> None:
        self._settings = settings
        self._dependencies = dependencies
        self._common = common
        self._blobs = blobs
        self._ledger = ledger
        self._producer = producer
        self._view = view
        self._job_ids = job_ids
        self._tokens = tokens
        self._eraser = eraser
        self._submits = KeyedLocks()
        self._photo_checks = asyncio.Semaphore(settings.max_photo_checks)

    async def _caller(self, context: grpc.aio.ServicerContext, scope: Scope) -> Caller:
        """The authenticated caller, if the token allows ``scope``; else the call aborts."""
        try:
            caller = self._tokens.caller(context.invocation_metadata())
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        if not caller.may(scope):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"the token lacks {scope}")
        return caller

    async def _job(self, job_id: str, caller: Caller, context: grpc.aio.ServicerContext) -> JobView:
        """The job if the caller may see it. Another creator's job is NOT_FOUND, word for
        word as an unknown one, so that a caller cannot learn that it exists."""
        view = await self._lookup(job_id, context)
        if view is None or not caller.may_see(view.creator_id):
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
        assert view is not None  # abort() raises
        return view

    async def _lookup(self, job_id: str, context: grpc.aio.ServicerContext) -> JobView | None:
        """The job from the status view; UNAVAILABLE when the view cannot tell (a job not
        in its cache, and alive.jobs unreadable): retrying later is the right answer."""
        try:
            return await self._view.get(job_id)
        except JobStatesUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
            raise AssertionError("abort() raises") from exc

    async def Submit(
        self, request: SubmitRequest, context: grpc.aio.ServicerContext
    ) -> SubmitResponse:
        caller = await self._caller(context, Scope.SUBMIT)
        request_id = request.request_id or str(uuid.uuid4())
        try:
            check_ids(caller.creator_id, request_id)
        except InvalidInput as exc:
            await _abort_with_reason(
                context, grpc.StatusCode.INVALID_ARGUMENT, exc.reason_code, exc.detail
            )
        job_id = self._job_ids.for_request(caller.creator_id, request_id)
        # The job's trace starts here; its context travels on in the Kafka headers.
        with tracer.start_as_current_span(
            "api.submit", kind=trace.SpanKind.SERVER, attributes={"alive.job_id": job_id}
        ):
            return await self._submit(request, caller.creator_id, request_id, job_id, context)

    async def _submit(
        self,
        request: SubmitRequest,
        creator_id: str,
        request_id: str,
        job_id: str,
        context: grpc.aio.ServicerContext,
    ) -> SubmitResponse:
        """The job for the request: made once, whichever replica the request (or its retry)
        reaches. Its request record (``ledger/requests/<job id>``) is created once, before the
        request is sent; a Submit that finds one, or loses the race to create it, sends that
        record's request and answers with its job (``existing``)."""
        async with self._submits.hold(job_id.encode()):
            existing = await self._lookup(job_id, context)
            if existing is not None:
                return SubmitResponse(job_id=job_id, existing=True, job=existing)
            if await asyncio.to_thread(self._ledger.is_erased, job_id):  # no stage would act
                await _abort_with_reason(
                    context,
                    grpc.StatusCode.FAILED_PRECONDITION,
                    ReasonCode.JOB_ERASED,
                    "this request id named a job that was erased; use a new one",
                )
            recorded = await asyncio.to_thread(self._ledger.get, REQUEST_RECORDS, job_id)
            if recorded is not None:
                return await self._send_request(job_id, recorded, context, existing=True)
            await self._check_capacity(creator_id, context)
            await self._check_queue(context)
            try:
                async with self._photo_checks:  # their memory is budgeted (settings)
                    photo = await asyncio.to_thread(
                        validate_photo, request.photo, self._settings, self._common.limits
                    )
                normalise_prompt(request.prompt, self._settings)
                resolve_output(request.output, self._common.limits.output)
            except InvalidInput as exc:
                await _abort_with_reason(
                    context, grpc.StatusCode.INVALID_ARGUMENT, exc.reason_code, exc.detail
                )
            # Only the cleaned photo (metadata stripped, orientation applied) is stored: the
            # upload as sent, EXIF and GPS included, never reaches the store.
            upload = await asyncio.to_thread(
                self._blobs.put_bytes,
                output_key(upload_area(creator_id, request_id) + "photo", ".png"),
                photo.png,
                "image/png",
            )
            event = ImagePromptRequest(
                request_id=request_id,
                creator_id=creator_id,
                photo=upload,
                prompt=request.prompt,
                output=request.output,
                submitted_at_ms=now_ms(),
                training_use_consent=request.training_use_consent,
            )
            if request.HasField("seed"):
                event.seed = request.seed
            mine = event.SerializeToString()
            standing = await asyncio.to_thread(self._ledger.decide, REQUEST_RECORDS, job_id, mine)
            # A loser's upload stays in its request's area, unreferenced.
            return await self._send_request(job_id, standing, context, existing=standing != mine)

    async def _send_request(
        self, job_id: str, record: bytes, context: grpc.aio.ServicerContext, existing: bool
    ) -> SubmitResponse:
        """Sends a request record's request and SUBMITTED status (both made from the record,
        so every replica sends the same) unless they went out already, then answers;
        UNAVAILABLE when the broker does not take them in time."""
        event = ImagePromptRequest.FromString(record)
        status = StatusEvent(
            job_id=job_id,
            request_id=event.request_id,
            creator_id=event.creator_id,
            state=JobState.SUBMITTED,
            stage="api",
            verdict=Verdict.PASS,
            at_ms=event.submitted_at_ms,
            stage_started_at_ms=event.submitted_at_ms,
        )
        if not await asyncio.to_thread(self._ledger.was_sent, REQUEST_RECORDS, job_id):
            headers, key = headers_with_trace(), job_id.encode()
            try:
                async with asyncio.timeout(self._settings.queue_timeout_s):
                    for topic, message in ((REQUESTS, event), (STATUS, status)):
                        await self._producer.send_and_wait(
                            self._common.topic(topic),
                            message.SerializeToString(),
                            key=key,
                            headers=headers,
                        )
            except (TimeoutError, KafkaError) as exc:
                # The request may still reach the broker later; the record stands, so a retry
                # with the same request id sends it again as the same job.
                log.warning("could not queue a job", extra={"job_id": job_id, "error": repr(exc)})
                await self._abort_unavailable(context, "the broker did not take the job in time")
            await asyncio.to_thread(self._ledger.mark_sent, REQUEST_RECORDS, job_id)
            # Sent: the record now only makes a retry the same job, which needs no prompt. (A
            # crash just before this leaves the prompt in it, encrypted, until erasure.)
            kept = ImagePromptRequest()
            kept.CopyFrom(event)
            kept.ClearField("prompt")
            await asyncio.to_thread(
                self._ledger.rewrite, REQUEST_RECORDS, job_id, kept.SerializeToString()
            )
            self._view.apply(status)  # so a retry of this Submit finds the job at once
            log.info("submitted", extra={"job_id": job_id, "existing": existing})
        # A view that has not seen the job yet (another replica sent it): what the record says.
        job = await self._view.get(job_id) or JobView(
            job_id=job_id,
            request_id=event.request_id,
            creator_id=event.creator_id,
            state=JobState.SUBMITTED,
            history=[status],
        )
        return SubmitResponse(job_id=job_id, existing=existing, job=job)

    async def _check_capacity(self, creator_id: str, context: grpc.aio.ServicerContext) -> None:
        """Aborts with RESOURCE_EXHAUSTED (a reason code and a retry hint in trailers) when the
        creator, or everyone together, has too many jobs under way."""
        limits = self._settings
        if self._view.in_flight(creator_id) >= limits.max_jobs_in_flight_per_creator:
            code, limit = ReasonCode.CREATOR_JOBS_IN_FLIGHT, limits.max_jobs_in_flight_per_creator
        elif self._view.in_flight() >= limits.max_jobs_in_flight:
            code, limit = ReasonCode.JOBS_IN_FLIGHT, limits.max_jobs_in_flight
        else:
            return
        context.set_trailing_metadata(
            ((REASON_TRAILER, code), (RETRY_AFTER_TRAILER, str(limits.retry_after_s)))
        )
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{code}: {limit} jobs under way; retry in {limits.retry_after_s} s",
        )

    async def _check_queue(self, context: grpc.aio.ServicerContext) -> None:
        """Aborts with UNAVAILABLE when a job could not be queued now (the last probe of
        the broker, the topics or the blob store failed), instead of taking it."""
        down = [name for name in QUEUE_DEPENDENCIES if not self._dependencies.up(name)]
        if down:
            await self._abort_unavailable(context, f"cannot queue jobs now ({', '.join(down)})")

    async def _abort_unavailable(self, context: grpc.aio.ServicerContext, detail: str) -> NoReturn:
        code, retry = ReasonCode.QUEUE_UNAVAILABLE, self._settings.retry_after_s
        context.set_trailing_metadata(((REASON_TRAILER, code), (RETRY_AFTER_TRAILER, str(retry))))
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"{code}: {detail}; retry in {retry} s")
        raise AssertionError("abort() raises")

    async def Get(self, request: GetJobRequest, context: grpc.aio.ServicerContext) -> JobView:
        caller = await self._caller(context, Scope.READ)
        return await self._job(request.job_id, caller, context)

    async def Watch(
        self, request: WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[StatusEvent]:
        caller = await self._caller(context, Scope.READ)
        await self._job(request.job_id, caller, context)
        try:
            async for event in self._view.watch(request.job_id):
                yield event
                if is_terminal(event.state) or (
                    request.stop_at_ready and event.state == JobState.READY
                ):
                    return
        except JobGone:  # erased while watched
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such job")

    async def Publish(
        self, request: PublishJobRequest, context: grpc.aio.ServicerContext
    ) -> JobView:
        caller = await self._caller(context, Scope.PUBLISH)
        view = await self._job(request.job_id, caller, context)
        if view.creator_id != caller.creator_id:  # a reviewer sees others' jobs, never posts them
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
        if view.state != JobState.READY:
            await _abort_with_reason(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                ReasonCode.JOB_NOT_READY,
                f"the job is {JobState.Name(view.state)}",
            )
        with tracer.start_as_current_span(
            "api.publish", kind=trace.SpanKind.SERVER, attributes={"alive.job_id": view.job_id}
        ):
            publish = PublishRequest(
                job_id=view.job_id, requested_by=caller.subject, requested_at_ms=now_ms()
            )
            await self._producer.send_and_wait(
                self._common.topic(PUBLISH_REQUESTS),
                publish.SerializeToString(),
                key=view.job_id.encode(),
                headers=headers_with_trace(),
            )
        return view

    async def Cancel(self, request: CancelJobRequest, context: grpc.aio.ServicerContext) -> JobView:
        caller = await self._caller(context, Scope.CANCEL)
        view = await self._job(request.job_id, caller, context)
        if view.creator_id != caller.creator_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
        if is_terminal(view.state):
            await _abort_with_reason(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                ReasonCode.JOB_ENDED,
                f"the job is {JobState.Name(view.state)}",
            )
        # The mark first: a stage that reads the job after it does no more work on it.
        await asyncio.to_thread(self._ledger.mark_cancelled, view.job_id)
        status = StatusEvent(
            job_id=view.job_id,
            request_id=view.request_id,
            creator_id=view.creator_id,
            state=JobState.CANCELLED,
            stage="api",
            detail=f"cancelled by {caller.subject}",
            at_ms=now_ms(),
        )
        await self._producer.send_and_wait(
            self._common.topic(STATUS),
            status.SerializeToString(),
            key=view.job_id.encode(),
            headers=headers_with_trace(),
        )
        self._view.apply(status)
        log.info("cancelled", extra={"job_id": view.job_id})
        cancelled = await self._view.get(view.job_id)
        assert cancelled is not None
        return cancelled

    async def Report(
        self, request: ReportRequest, context: grpc.aio.ServicerContext
    ) -> ReportResponse:
        caller = await self._caller(context, Scope.REPORT)
        if request.reason_code not in REPORT_REASONS:
            await _abort_with_reason(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                ReasonCode.REPORT_REASON_UNKNOWN,
                f"report with one of {sorted(REPORT_REASONS)}",
            )
        view = await self._lookup(request.job_id, context)
        if view is None or view.state != JobState.PUBLISHED:  # only what is on a Story
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such published video")
        assert view is not None
        # One report per reporter and video: a retry or a second tap counts once.
        report_id = hashlib.sha256(f"{caller.subject}\n{view.job_id}".encode()).hexdigest()[:32]
        marker = f"ledger/reports/{view.job_id}/{report_id}"
        if await asyncio.to_thread(self._blobs.read_key, marker) is not None:
            return ReportResponse(report_id=report_id, duplicate=True)
        report = UserReport(
            report_id=report_id,
            job_id=view.job_id,
            reporter=caller.subject,
            reason_code=request.reason_code,
            at_ms=now_ms(),
        )
        # The event first: a failure after it leaves no marker, the retry sends again, and
        # the review web app counts one report per reporter and video all the same.
        await self._producer.send_and_wait(
            self._common.topic(REPORTS),
            report.SerializeToString(),
            key=view.job_id.encode(),
            headers=headers_with_trace(),
        )
        try:
            await asyncio.to_thread(self._blobs.put_bytes, marker, b"", "text/plain")
        except BlobError as exc:
            if exc.reason_code != ReasonCode.BLOB_EXISTS:  # a concurrent duplicate: fine
                raise
        log.info("reported", extra={"job_id": view.job_id, "reason_code": request.reason_code})
        return ReportResponse(report_id=report_id, duplicate=False)

    async def Erase(
        self, request: EraseRequest, context: grpc.aio.ServicerContext
    ) -> ErasureReceipt:
        try:
            caller = self._tokens.caller(context.invocation_metadata())
        except Unauthenticated as exc:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
        admin = caller.may(Scope.PRIVACY_ADMIN)
        if not (admin or caller.may(Scope.ERASE)):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"the token lacks {Scope.ERASE} or {Scope.PRIVACY_ADMIN}",
            )
        target = request.WhichOneof("target")
        with tracer.start_as_current_span("api.erase", kind=trace.SpanKind.SERVER):
            if target == "job_id":
                job = await self._job_to_erase(request.job_id)
                if job is None or not (admin or job.creator_id == caller.creator_id):
                    await context.abort(grpc.StatusCode.NOT_FOUND, "no such job")
                assert job is not None  # abort() raises
                receipt = await self._eraser.erase_jobs([job])
            elif target == "creator_id":
                creator = request.creator_id
                if not valid_id(creator):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a creator id")
                if not (admin or creator == caller.creator_id):
                    await context.abort(
                        grpc.StatusCode.PERMISSION_DENIED, "a creator may erase only itself"
                    )
                known = [_erased(v) for v in self._view.jobs_of(creator)]
                receipt = await self._eraser.erase_creator(creator, known)
            else:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "name a job or a creator")
        for job_id in receipt.job_ids:
            self._view.erase(job_id)
        log.info(
            "erased",
            extra={
                "erasure_id": receipt.erasure_id,
                "jobs": len(receipt.job_ids),
                "deleted": sum(receipt.deleted.values()),
                "by_privacy_admin": admin,
            },
        )
        return _receipt_message(receipt)

    async def _job_to_erase(self, job_id: str) -> ErasedJob | None:
        """The job's owner as ingest indexed it, or as the status view knows it (submitted,
        not yet through ingest); None for an unknown job or one already erased."""
        if not valid_id(job_id) or await asyncio.to_thread(self._ledger.is_erased, job_id):
            return None
        indexed = await asyncio.to_thread(indexed_job, self._blobs, job_id)
        if indexed is not None:
            return indexed
        view = await self._view.get(job_id)
        return _erased(view) if view is not None else None


def _erased(view: JobView) -> ErasedJob:
    return ErasedJob(view.job_id, view.creator_id, view.request_id)


def _receipt_message(receipt: Receipt) -> ErasureReceipt:
    return ErasureReceipt(
        erasure_id=receipt.erasure_id,
        job_ids=receipt.job_ids,
        erased_at_ms=receipt.erased_at_ms,
        deleted={kind: count for kind, count in receipt.deleted.items() if count},
        steps=receipt.steps,
    )


def unpublish_erased(
    producer: AIOKafkaProducer, common: ServiceSettings, ledger: StageLedger
) -> ErasureStep:
    """An erasure step, before the ledger goes: a published job's video is taken off
    Stories (an Unpublished event, JOB_ERASED) for Story services that hold a copy."""

    async def erase(job: ErasedJob, receipt: Receipt) -> None:
        record = await asyncio.to_thread(ledger.get, REVIEW.name, job.job_id)
        if record is None or not StageOutcome.FromString(record).HasField("passed"):
            return
        event = Unpublished(
            job_id=job.job_id,
            creator_id=job.creator_id,
            reason_codes=[ReasonCode.JOB_ERASED],
            at_ms=now_ms(),
        )
        await producer.send_and_wait(
            common.topic(UNPUBLISHED),
            event.SerializeToString(),
            key=job.job_id.encode(),
            headers=headers_with_trace(),
        )
        receipt.count("unpublished", 1)

    return ErasureStep("unpublish", erase)


def topic_tombstones(
    producer: AIOKafkaProducer, common: ServiceSettings, topics: Sequence[Topic[Any]]
) -> ErasureStep:
    """An erasure step: a tombstone (a record with no value) keyed by the job on each topic,
    so its readers (the status view, the review queue) forget the job, now and when they
    read the topic again from the start."""

    async def erase(job: ErasedJob, receipt: Receipt) -> None:
        for topic in topics:
            await producer.send_and_wait(
                common.topic(topic), None, key=job.job_id.encode(), headers=headers_with_trace()
            )
            receipt.count(f"tombstones.{topic.key}", 1)

    return ErasureStep("tombstones", erase)


async def _abort_with_reason(
    context: grpc.aio.ServicerContext,
    status: grpc.StatusCode,
    code: ReasonCode,
    detail: str,
) -> NoReturn:
    """Ends the call with ``status``, the reason code first in the message and in the
    ``alive-reason-code`` trailer."""
    context.set_trailing_metadata(((REASON_TRAILER, code),))
    await context.abort(status, f"{code}: {detail}")
    raise AssertionError("abort() raises")


def server_credentials(settings: IngestSettings) -> grpc.ServerCredentials | None:
    """TLS from settings (mutual when a client CA is set); None only when plaintext is
    asked for explicitly (a mesh sidecar terminates TLS). Neither is a setup error."""
    if settings.grpc_plaintext:
        return None
    if settings.tls_cert_path is None or settings.tls_key_path is None:
        raise ValueError(
            "the gRPC API needs ALIVE_INGEST__TLS_CERT_PATH and ALIVE_INGEST__TLS_KEY_PATH "
            "(or ALIVE_INGEST__GRPC_PLAINTEXT=true behind a TLS-terminating mesh)"
        )
    client_ca = settings.tls_client_ca_path
    return grpc.ssl_server_credentials(
        [(settings.tls_key_path.read_bytes(), settings.tls_cert_path.read_bytes())],
        root_certificates=client_ca.read_bytes() if client_ca else None,
        require_client_auth=client_ca is not None,
    )


class ApiServer:
    """The gRPC server as a service component, with standard gRPC health checking
    (grpc.health.v1: SERVING while it runs) and, when a setting turns it on, reflection."""

    def __init__(
        self,
        settings: IngestSettings,
        api: AliveApi,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> None:
        self._settings = settings
        self._api = api
        self._interceptors = tuple(interceptors)
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> None:
        limit = self._settings.max_photo_bytes + 1024 * 1024
        server = grpc.aio.server(
            interceptors=self._interceptors,
            options=[("grpc.max_receive_message_length", limit)],
        )
        api_pb2_grpc.add_AliveServicer_to_server(self._api, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self._settings.grpc_reflection:
            reflection.enable_server_reflection((API_SERVICE, health.SERVICE_NAME), server)
        address = f"{self._settings.grpc_host}:{self._settings.grpc_port}"
        credentials = server_credentials(self._settings)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        await server.start()
        for service in ("", API_SERVICE):  # "": the server as a whole
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("gRPC API listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            await self._health.enter_graceful_shutdown()  # NOT_SERVING while draining
            await self._server.stop(grace=5)
