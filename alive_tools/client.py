"""A small synchronous client for Alive's gRPC API (used by the CLI and the tests).

It speaks TLS when given the CA to trust and sends its bearer token with every call.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from alive.reasons import REASON_TRAILER
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
from alive.v1.api_pb2_grpc import AliveStub
from alive.v1.events_pb2 import OutputSpec, StatusEvent

_MAX_MESSAGE = 64 * 1024 * 1024


class Rejected(Exception):
    """The API refused a submission; ``reason_code`` says why (docs/reason-codes.md)."""

    def __init__(self, reason_code: str, message: str) -> None:
        super().__init__(message)
        self.reason_code = reason_code


class AliveClient:
    def __init__(
        self,
        target: str,
        *,
        token: str | None,
        tls_ca: bytes | None,
        server_name: str | None = None,
    ) -> None:
        """``tls_ca``: the CA certificates to trust (PEM); None for a plaintext channel.
        ``token``: the bearer token sent with every call (None: none, e.g. to test refusal).
        ``server_name``: the name the server's certificate must carry, when ``target`` is an
        address it does not name (a replica's IP behind a load balancer's name)."""
        options: list[tuple[str, int | str]] = [("grpc.max_send_message_length", _MAX_MESSAGE)]
        if server_name is not None:
            options.append(("grpc.ssl_target_name_override", server_name))
        if tls_ca is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            credentials = grpc.ssl_channel_credentials(root_certificates=tls_ca)
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._stub = AliveStub(self._channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()

    def submit(
        self,
        photo: bytes,
        prompt: str = "",
        *,
        request_id: str = "",
        output: OutputSpec | None = None,
        seed: int | None = None,
        training_use_consent: bool = False,
        timeout_s: float = 30,
    ) -> SubmitResponse:
        request = SubmitRequest(
            photo=photo,
            prompt=prompt,
            request_id=request_id,
            output=output or OutputSpec(),
            training_use_consent=training_use_consent,
        )
        if seed is not None:
            request.seed = seed
        try:
            response: SubmitResponse = self._stub.Submit(
                request, timeout=timeout_s, metadata=self._metadata
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                trailers = dict(exc.trailing_metadata() or ())
                raise Rejected(str(trailers.get(REASON_TRAILER, "")), exc.details()) from exc
            raise
        return response

    def get(self, job_id: str, timeout_s: float = 10) -> JobView:
        request = GetJobRequest(job_id=job_id)
        view: JobView = self._stub.Get(request, timeout=timeout_s, metadata=self._metadata)
        return view

    def watch(
        self, job_id: str, *, stop_at_ready: bool = False, timeout_s: float = 600
    ) -> Iterator[StatusEvent]:
        request = WatchRequest(job_id=job_id, stop_at_ready=stop_at_ready)
        yield from self._stub.Watch(request, timeout=timeout_s, metadata=self._metadata)

    def publish(self, job_id: str, timeout_s: float = 10) -> JobView:
        request = PublishJobRequest(job_id=job_id)
        view: JobView = self._stub.Publish(request, timeout=timeout_s, metadata=self._metadata)
        return view

    def cancel(self, job_id: str, timeout_s: float = 10) -> JobView:
        request = CancelJobRequest(job_id=job_id)
        view: JobView = self._stub.Cancel(request, timeout=timeout_s, metadata=self._metadata)
        return view

    def report(self, job_id: str, reason_code: str, timeout_s: float = 10) -> ReportResponse:
        request = ReportRequest(job_id=job_id, reason_code=reason_code)
        answer: ReportResponse = self._stub.Report(
            request, timeout=timeout_s, metadata=self._metadata
        )
        return answer

    def erase(
        self, *, job_id: str | None = None, creator_id: str | None = None, timeout_s: float = 60
    ) -> ErasureReceipt:
        """Erases one job, or everything about a creator (give exactly one)."""
        if job_id is not None and creator_id is None:
            request = EraseRequest(job_id=job_id)
        elif creator_id is not None and job_id is None:
            request = EraseRequest(creator_id=creator_id)
        else:
            raise ValueError("erase a job or a creator")
        receipt: ErasureReceipt = self._stub.Erase(
            request, timeout=timeout_s, metadata=self._metadata
        )
        return receipt

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AliveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
