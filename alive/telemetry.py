"""Structured logs, Prometheus metrics and OpenTelemetry traces, the same for every service.

Logs are JSON lines on stderr. They carry ids, stages, verdicts and timings; by rule they
never carry a prompt or image bytes (no log call in Alive passes either).
Trace context travels in Kafka headers (W3C ``traceparent``), so one trace follows a job
across services. Spans are exported over OTLP only when an endpoint is configured.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


def setup_logging(service: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiokafka logs every rebalance at INFO; keep its warnings.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


def setup_tracing(service: str, otlp_endpoint: str | None) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": f"alive-{service}"}))
    if otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=otlp_endpoint)))
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


class StageMetrics:
    """The Prometheus metrics every stage exports (docs/observability.md)."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.registry = registry
        labels = ["service"]
        self.events_in = Counter(
            "alive_events_in", "Events consumed.", [*labels, "topic"], registry=registry
        )
        self.events_out = Counter(
            "alive_events_processed",
            "Events processed, by outcome (passed, vetoed, rejected, held, failed, duplicate, "
            "cancelled, undecodable, dead_lettered).",
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


def now_ms() -> int:
    return int(time.time() * 1000)
