"""Alive's gRPC API served in process (a real gRPC server and producer on the test broker),
with a status view fed by hand: the caps on jobs under way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from alive.blobs import LocalBlobStore
from alive.kafka import ensure_topics, make_producer
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import SubmitRequest
from alive.v1.api_pb2_grpc import AliveStub
from alive.v1.events_pb2 import JobState, OutputSpec, StatusEvent
from alive_tools.embedded.broker import EmbeddedBroker
from services.ingest.api import AliveApi, ApiServer
from services.ingest.settings import IngestSettings
from services.ingest.status_view import StatusView
from tests.support import photo_bytes


@pytest.fixture
async def api(
    broker: EmbeddedBroker, tmp_path: Path
) -> AsyncIterator[tuple[AliveStub, StatusView]]:
    common = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        blob_root=tmp_path,
    )
    await ensure_topics(common)
    settings = IngestSettings(grpc_port=0, max_jobs_in_flight=2, max_jobs_in_flight_per_creator=5)
    view = StatusView(common)
    producer = make_producer(common, "api-test")
    await producer.start()
    server = ApiServer(
        settings, AliveApi(settings, common, LocalBlobStore(tmp_path), producer, view)
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield AliveStub(channel), view
    await server.stop()
    await producer.stop()


async def test_everyone_together_over_the_cap_are_told_to_retry(
    api: tuple[AliveStub, StatusView],
) -> None:
    stub, view = api
    for job_id, creator in (("j1", "alice"), ("j2", "bob")):
        view.apply(StatusEvent(job_id=job_id, creator_id=creator, state=JobState.GENERATED))
    request = SubmitRequest(
        photo=photo_bytes(), creator_id="carol", request_id="r1", output=OutputSpec()
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Submit(request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["alive-reason-code"] == "JOBS_IN_FLIGHT"
    view.apply(StatusEvent(job_id="j2", creator_id="bob", state=JobState.READY))
    accepted = await stub.Submit(request, timeout=10)
    assert not accepted.existing and accepted.job.state == JobState.SUBMITTED
