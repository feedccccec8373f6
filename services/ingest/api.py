"""Alive's gRPC API (protos/alive/v1/api.proto; contract in docs/api.md).

Submit validates with the same code as the Kafka intake, stores the upload in the blob
store, and publishes an ImagePromptRequest to alive.requests plus a SUBMITTED status.
Get and Watch serve the StatusView. Publish hands a READY job to the review service.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import grpc
from aiokafka import AIOKafkaProducer
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from alive.blobs import BlobStore
from alive.jobs import is_terminal
from alive.locks import KeyedLocks
from alive.pipeline import PUBLISH_REQUESTS, REQUESTS, STATUS
from alive.reasons import REASON_TRAILER, RETRY_AFTER_TRAILER, ReasonCode
from alive.settings import ServiceSettings
from alive.telemetry import headers_with_trace, now_ms
from alive.v1 import api_pb2, api_pb2_grpc
from alive.v1.api_pb2 import (
    GetJobRequest,
    JobView,
    PublishJobRequest,
    SubmitRequest,
    SubmitResponse,
    WatchRequest,
)
from alive.v1.events_pb2 import ImagePromptRequest, JobState, PublishRequest, StatusEvent, Verdict
from services.ingest.settings import IngestSettings
from services.ingest.stage import job_id_for
from services.ingest.status_view import StatusView
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


class AliveApi(api_pb2_grpc.AliveServicer):
    def __init__(
        self,
        settings: IngestSettings,
        common: ServiceSettings,
        blobs: BlobStore,
        producer: AIOKafkaProducer,
        view: StatusView,
    ) -> None:
        self._settings = settings
        self._common = common
        self._blobs = blobs
        self._producer = producer
        self._view = view
        self._submits = KeyedLocks()

    async def Submit(
        self, request: SubmitRequest, context: grpc.aio.ServicerContext
    ) -> SubmitResponse:
        request_id = request.request_id or str(uuid.uuid4())
        try:
            check_ids(request.creator_id, request_id)
        except InvalidInput as exc:
            await _abort_invalid(context, exc.reason_code, exc.detail)
        job_id = job_id_for(request.creator_id, request_id)
        # The job's trace starts here; its context travels on in the Kafka headers.
        with tracer.start_as_current_span(
            "api.submit", kind=trace.SpanKind.SERVER, attributes={"alive.job_id": job_id}
        ):
            return await self._submit(request, request_id, job_id, context)

    async def _submit(
        self,
        request: SubmitRequest,
        request_id: str,
        job_id: str,
        context: grpc.aio.ServicerContext,
    ) -> SubmitResponse:
        async with self._submits.hold(job_id.encode()):
            existing = self._view.get(job_id)
            if existing is not None:
                return SubmitResponse(job_id=job_id, existing=True, job=existing)
            await self._check_capacity(request.creator_id, context)
            try:
                await asyncio.to_thread(validate_photo, request.photo, self._settings)
                normalise_prompt(request.prompt, self._settings)
                resolve_output(request.output, self._settings)
            except InvalidInput as exc:
                await _abort_invalid(context, exc.reason_code, exc.detail)
            upload = await asyncio.to_thread(
                self._blobs.put_bytes,
                f"uploads/{job_id}",
                request.photo,
                "application/octet-stream",
            )
            event = ImagePromptRequest(
                request_id=request_id,
                creator_id=request.creator_id,
                photo=upload,
                prompt=request.prompt,
                output=request.output,
                submitted_at_ms=now_ms(),
            )
            if request.HasField("seed"):
                event.seed = request.seed
            status = StatusEvent(
                job_id=job_id,
                request_id=request_id,
                creator_id=request.creator_id,
                state=JobState.SUBMITTED,
                stage="api",
                verdict=Verdict.PASS,
                at_ms=now_ms(),
                stage_started_at_ms=event.submitted_at_ms,
            )
            headers = headers_with_trace()
            key = job_id.encode()
            await self._producer.send_and_wait(
                self._common.topic(REQUESTS),
                event.SerializeToString(),
                key=key,
                headers=headers,
            )
            await self._producer.send_and_wait(
                self._common.topic(STATUS),
                status.SerializeToString(),
                key=key,
                headers=headers,
            )
            self._view.apply(status)  # so a retry of this Submit finds the job at once
            log.info("submitted", extra={"job_id": job_id})
            return SubmitResponse(job_id=job_id, existing=False, job=self._view.get(job_id))

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

    async def Get(self, request: GetJobRequest, context: grpc.aio.ServicerContext) -> JobView:
        view = self._view.get(request.job_id)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        assert view is not None  # abort() raises
        return view

    async def Watch(
        self, request: WatchRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[StatusEvent]:
        if self._view.get(request.job_id) is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        async for event in self._view.watch(request.job_id):
            yield event
            if is_terminal(event.state) or (
                request.stop_at_ready and event.state == JobState.READY
            ):
                return

    async def Publish(
        self, request: PublishJobRequest, context: grpc.aio.ServicerContext
    ) -> JobView:
        view = self._view.get(request.job_id)
        if view is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job {request.job_id}")
        assert view is not None
        if view.state != JobState.READY:
            code = ReasonCode.JOB_NOT_READY
            context.set_trailing_metadata(((REASON_TRAILER, code),))
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{code}: the job is {JobState.Name(view.state)}",
            )
        with tracer.start_as_current_span(
            "api.publish", kind=trace.SpanKind.SERVER, attributes={"alive.job_id": view.job_id}
        ):
            await self._send_publish(request)
        return view

    async def _send_publish(self, request: PublishJobRequest) -> None:
        publish = PublishRequest(
            job_id=request.job_id, requested_by=request.requested_by, requested_at_ms=now_ms()
        )
        await self._producer.send_and_wait(
            self._common.topic(PUBLISH_REQUESTS),
            publish.SerializeToString(),
            key=request.job_id.encode(),
            headers=headers_with_trace(),
        )


async def _abort_invalid(context: grpc.aio.ServicerContext, code: ReasonCode, detail: str) -> None:
    context.set_trailing_metadata(((REASON_TRAILER, code),))
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"{code}: {detail}")


class ApiServer:
    """The gRPC server as a service component, with standard gRPC health checking
    (grpc.health.v1: SERVING while it runs) and, when a setting turns it on, reflection."""

    def __init__(self, settings: IngestSettings, api: AliveApi) -> None:
        self._settings = settings
        self._api = api
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> None:
        limit = self._settings.max_photo_bytes + 1024 * 1024
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit)])
        api_pb2_grpc.add_AliveServicer_to_server(self._api, server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self._settings.grpc_reflection:
            reflection.enable_server_reflection((API_SERVICE, health.SERVICE_NAME), server)
        self.port = server.add_insecure_port(
            f"{self._settings.grpc_host}:{self._settings.grpc_port}"
        )
        await server.start()
        for service in ("", API_SERVICE):  # "": the server as a whole
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._server = server
        log.info("gRPC API listening", extra={"port": self.port})

    async def stop(self) -> None:
        if self._server is not None:
            await self._health.enter_graceful_shutdown()  # NOT_SERVING while draining
            await self._server.stop(grace=5)
