"""Structured logs, Prometheus metrics and OpenTelemetry traces, the same for every service.

Logs are JSON lines on stderr. They carry ids, stages, verdicts and timings; by rule they
never carry a prompt or image bytes (no log call in Alive passes either).
Trace context travels in Kafka headers (W3C ``traceparent``), so one trace follows a job
across services. Spans are exported over OTLP only when an endpoint is configured, and as
JSON lines to a file per service when a trace folder is (debugging, and the tests that read
every span of a run).
"""

from __future__ import annotations

import inspect
import json
import logging
import platform
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)

Headers = Sequence[tuple[str, bytes]]

_STANDARD_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS})
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = format(span.trace_id, "032x")
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RepeatedWarnings(logging.Filter):
    """Holds back repeats of a warning or error: of the records with the same logger, level,
    message (before its arguments are filled in) and extra fields, the first passes, then at
    most one per ``window_s``, carrying ``repeated``: how many were held back since the
    last. A dead broker makes Kafka clients warn many times a second; the log keeps a line
    every ``window_s``. A record about a job (``job_id``) always passes."""

    MAX_KINDS = 1000  # forget them all past this many kinds of message, to stay bounded

    def __init__(self, window_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._runs: dict[tuple[str, int, str, tuple[tuple[str, str], ...]], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "job_id", None):
            return True
        extras = sorted(
            (k, repr(v)) for k, v in vars(record).items() if k not in _STANDARD_RECORD_KEYS
        )
        key = (record.name, record.levelno, str(record.msg), tuple(extras))
        now = self._clock()
        last = self._runs.get(key)
        if last is not None and now - last[0] < self._window_s:
            self._runs[key] = (last[0], last[1] + 1)
            return False
        if len(self._runs) >= self.MAX_KINDS:
            self._runs.clear()
        self._runs[key] = (now, 0)
        if last is not None and last[1]:
            record.repeated = last[1]
        return True


def setup_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    handler.addFilter(RepeatedWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance at INFO; keep its warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


class JsonLinesSpanExporter(SpanExporter):
    """Each finished span as one JSON line (OpenTelemetry's own JSON of it) appended to a
    file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        for span in spans:
            self._file.write(json.dumps(json.loads(span.to_json())) + "\n")
        self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


def setup_tracing(service: str, otlp_endpoint: str | None, trace_dir: Path | None = None) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"alive-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
    if trace_dir is not None:
        # Written as each span ends: a reader sees a span as soon as it is over.
        exporter = JsonLinesSpanExporter(trace_dir / f"{service}.jsonl")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)


def shutdown_tracing() -> None:
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {k: v.decode("latin-1") for k, v in headers or ()}
    return propagate.extract(carrier)


def headers_with_trace(extra: Iterable[tuple[str, bytes]] = ()) -> list[tuple[str, bytes]]:
    """Kafka headers carrying the current trace context, plus ``extra``."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v.encode("latin-1")) for k, v in carrier.items()] + list(extra)


def alive_version() -> str:
    try:
        return version("alive")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


# What ``alive_events_processed_total{outcome}`` counts (docs/observability.md).
OUTCOMES = (
    "passed",
    "vetoed",
    "rejected",
    "held",
    "failed",
    "duplicate",
    "cancelled",
    "erased",
    "undecodable",
    "dead_lettered",
)


class StageMetrics:
    """The Prometheus metrics every stage exports (docs/observability.md).

    No label ever carries a prompt, a job id or a creator: labels are services, stages,
    topics, partitions, outcomes, reason codes and gRPC methods, all from small fixed sets.
    """

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        labels = ["service"]
        # process_* (CPU, memory, open files) and python_info, in the service's own registry.
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        build = Gauge(
            "alive_build_info",
            "Always 1; the labels say which build runs.",
            [*labels, "version", "python"],
            registry=registry,
        )
        build.labels(service, alive_version(), platform.python_version()).set(1)
        self.events_in = Counter(
            "alive_events_in", "Events consumed.", [*labels, "topic"], registry=registry
        )
        self.events_out = Counter(
            "alive_events_processed",
            f"Events processed, by outcome ({', '.join(OUTCOMES)}).",
            [*labels, "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "alive_stage_latency_seconds",
            "Time from taking an event to its outputs being acknowledged.",
            labels,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=registry,
        )
        self.job_age = Histogram(
            "alive_job_age_seconds",
            "Age of a job (from its submission) when the stage passed it on: the stage that "
            "makes a job READY observes the end-to-end latency.",
            labels,
            buckets=(1, 2.5, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800),
            registry=registry,
        )
        self.vetoes = Counter(
            "alive_vetoes",
            "Vetoes, by checkpoint and reason code.",
            ["checkpoint", "reason"],
            registry=registry,
        )
        self.attestation_failures = Counter(
            "alive_attestation_failures",
            "Jobs ended because an attestation they needed was missing or invalid, by the "
            "stage whose attestation it was: a forged or tampered event. Alert on any.",
            [*labels, "required_stage", "reason"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "alive_in_flight", "Events being processed now.", labels, registry=registry
        )
        self.errors = Counter(
            "alive_errors",
            "Processing errors, by kind (transient, permanent).",
            [*labels, "kind"],
            registry=registry,
        )
        self.dead_lettered = Counter(
            "alive_dead_lettered",
            "Events sent to the dead-letter topic.",
            labels,
            registry=registry,
        )
        self.commit_lag = Gauge(
            "alive_uncommitted_offsets",
            "Offsets taken but not yet committed, summed over partitions.",
            labels,
            registry=registry,
        )
        # Every series this service will have, at 0 from the start: a rate or an increase
        # over a series that appears only at its first event misses that event (the first
        # dead letter would never alert).
        for outcome in OUTCOMES:
            self.events_out.labels(service, outcome)
        for kind in ("transient", "permanent"):
            self.errors.labels(service, kind)
        for per_service in (self.latency, self.job_age, self.dead_lettered, self.in_flight):
            per_service.labels(service)
        lag_labels = ["group", "topic", "partition"]
        self.lag_messages = Gauge(
            "alive_consumer_lag_messages",
            "Records of the partition not yet committed by the group: the partition's high "
            "watermark minus the group's commit point (in-flight records included).",
            lag_labels,
            registry=registry,
        )
        self.lag_seconds = Gauge(
            "alive_consumer_lag_seconds",
            "How long the oldest record of the partition not yet finished by the group has "
            "waited: its Kafka timestamp's age when it was taken; for records not fetched yet "
            "(a paused partition), the time since the partition last had no lag. 0: none.",
            lag_labels,
            registry=registry,
        )


class GrpcServerMetrics(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Requests, status codes and handling time of a gRPC server, per method.

    ``alive_grpc_server_handled_total{method, code}`` and
    ``alive_grpc_server_handling_seconds{method}`` (for a streaming call: until its stream
    ends). ``method`` is the full method name, e.g. ``/alive.v1.Alive/Submit``.
    """

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self._service = service
        self._handled = Counter(
            "alive_grpc_server_handled",
            "gRPC calls finished, by method and status code.",
            ["service", "method", "code"],
            registry=registry,
        )
        self._seconds = Histogram(
            "alive_grpc_server_handling_seconds",
            "Time from a gRPC call's start to its end (a stream: its last message).",
            ["service", "method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
            registry=registry,
        )

    def _observe(
        self, method: str, context: grpc.aio.ServicerContext, started: float, failed: bool
    ) -> None:
        code = context.code()
        if code is None:
            code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
        name = code.name if isinstance(code, grpc.StatusCode) else str(code)
        self._handled.labels(self._service, method, name).inc()
        self._seconds.labels(self._service, method).observe(time.perf_counter() - started)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method: str = details.method
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
                started, failed = time.perf_counter(), True
                try:
                    response = await inner(request, context)
                    failed = False
                    return response
                finally:
                    self._observe(method, context, started, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            inner_stream = handler.unary_stream

            async def unary_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                started, failed = time.perf_counter(), True
                try:
                    async for response in inner_stream(request, context):
                        yield response
                    failed = False
                finally:
                    self._observe(method, context, started, failed)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:  # a coroutine that writes with context.write
            inner_writer = handler.unary_stream

            async def unary_stream_writer(request: Any, context: grpc.aio.ServicerContext) -> None:
                started, failed = time.perf_counter(), True
                try:
                    await inner_writer(request, context)
                    failed = False
                finally:
                    self._observe(method, context, started, failed)

            return grpc.unary_stream_rpc_method_handler(
                unary_stream_writer,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler  # client-streaming calls: Alive serves none


def now_ms() -> int:
    return int(time.time() * 1000)
