"""A small synchronous client for Alive's gRPC API (used by the CLI and the tests)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from alive.reasons import REASON_TRAILER
from alive.v1.api_pb2 import (
    GetJobRequest,
    JobView,
    PublishJobRequest,
    SubmitRequest,
    SubmitResponse,
    WatchRequest,
)
from alive.v1.api_pb2_grpc import AliveStub
from alive.v1.events_pb2 import OutputSpec, StatusEvent

_MAX_MESSAGE = 64 * 1024 * 1024


class Rejected(Exception):
    """The API refused a submission; ``reason_code`` says why (docs/reason-codes.md)."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class AliveClient:
    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(
            target, options=[("grpc.max_send_message_length", _MAX_MESSAGE)]
        )
        self._stub = AliveStub(self._channel)

    def submit(
        self,
        photo: bytes,
        prompt: str = "",
        *,
        creator_id: str = "cli",
        request_id: str = "",
        output: OutputSpec | None = None,
        seed: int | None = None,
        timeout_s: float = 30,
    ) -> SubmitResponse:
        request = SubmitRequest(
            photo=photo,
            prompt=prompt,
            creator_id=creator_id,
            request_id=request_id,
            output=output or OutputSpec(),
        )
        if seed is not None:
            request.seed = seed
        try:
            response: SubmitResponse = self._stub.Submit(request, timeout=timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                trailers = dict(exc.trailing_metadata() or ())
                raise Rejected(str(trailers.get(REASON_TRAILER, "")), exc.details()) from exc
            raise
        return response

    def get(self, job_id: str, timeout_s: float = 10) -> JobView:
        view: JobView = self._stub.Get(GetJobRequest(job_id=job_id), timeout=timeout_s)
        return view

    def watch(
        self, job_id: str, *, stop_at_ready: bool = False, timeout_s: float = 600
    ) -> Iterator[StatusEvent]:
        request = WatchRequest(job_id=job_id, stop_at_ready=stop_at_ready)
        yield from self._stub.Watch(request, timeout=timeout_s)

    def publish(self, job_id: str, requested_by: str = "cli", timeout_s: float = 10) -> JobView:
        request = PublishJobRequest(job_id=job_id, requested_by=requested_by)
        view: JobView = self._stub.Publish(request, timeout=timeout_s)
        return view

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
