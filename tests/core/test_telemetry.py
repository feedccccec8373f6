"""The metrics every service shares: build info and process metrics in the service's own
registry, per-service series at 0 from the start, and the gRPC server interceptor's counts
by method and status code, for unary and streaming calls."""

from __future__ import annotations

import asyncio
import platform

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from alive.telemetry import OUTCOMES, GrpcServerMetrics, StageMetrics, alive_version


def test_stage_metrics_export_build_info_process_metrics_and_zeroes() -> None:
    registry = CollectorRegistry()
    StageMetrics("audio", registry)
    value = registry.get_sample_value
    build = {"service": "audio", "version": alive_version(), "python": platform.python_version()}
    assert value("alive_build_info", build) == 1
    assert value("process_resident_memory_bytes") > 0
    assert value("python_info", _python_labels()) == 1
    for outcome in OUTCOMES:  # a rate sees the first event of every outcome
        assert value("alive_events_processed_total", {"service": "audio", "outcome": outcome}) == 0
    assert value("alive_dead_lettered_total", {"service": "audio"}) == 0
    assert value("alive_stage_latency_seconds_count", {"service": "audio"}) == 0


def _python_labels() -> dict[str, str]:
    major, minor, patchlevel = platform.python_version_tuple()
    return {
        "implementation": platform.python_implementation(),
        "major": major,
        "minor": minor,
        "patchlevel": patchlevel,
        "version": platform.python_version(),
    }


async def test_the_grpc_interceptor_counts_calls_by_method_and_code() -> None:
    registry = CollectorRegistry()
    servicer = health.aio.HealthServicer()
    server = grpc.aio.server(interceptors=[GrpcServerMetrics("ingest", registry)])
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await servicer.set("known", health_pb2.HealthCheckResponse.SERVING)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(health_pb2.HealthCheckRequest(service="known"))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.Check(health_pb2.HealthCheckRequest(service="unknown"))
            stream = stub.Watch(health_pb2.HealthCheckRequest(service="known"))
            first = await stream.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            stream.cancel()
            await asyncio.sleep(0.2)  # the server sees the cancellation
    finally:
        await server.stop(grace=None)
    value = registry.get_sample_value
    check = "/grpc.health.v1.Health/Check"
    assert value("alive_grpc_server_handled_total",
                 {"service": "ingest", "method": check, "code": "OK"}) == 1  # fmt: skip
    assert value("alive_grpc_server_handled_total",
                 {"service": "ingest", "method": check, "code": "NOT_FOUND"}) == 1  # fmt: skip
    assert value("alive_grpc_server_handling_seconds_count",
                 {"service": "ingest", "method": check}) == 2  # fmt: skip
    watch = "/grpc.health.v1.Health/Watch"
    assert value("alive_grpc_server_handling_seconds_count",
                 {"service": "ingest", "method": watch}) == 1  # fmt: skip
