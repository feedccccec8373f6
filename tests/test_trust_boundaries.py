"""Trust boundaries on the real embedded stack: callers see and touch only their own jobs,
forged or tampered events never yield a signed or published video, planted files are not
taken as outputs, and no record stops a stage."""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid

import grpc
import pytest
from aiokafka import AIOKafkaProducer

from alive.blobs import StageLedger
from alive.pipeline import (
    ACCEPTED,
    DLQ,
    GENERATED,
    PHOTO_CLEARED,
    PIPELINE,
    PROMPT_CLEARED,
    PUBLISH_REQUESTS,
    READY,
    REQUESTS,
    SCORED,
    SIGNED,
    STATUS,
    Topic,
)
from alive.processing import DLQ_REASON
from alive.provenance import verify_video
from alive.v1.events_pb2 import Job, JobState, PublishRequest, StageOutcome, StatusEvent
from alive_tools.client import AliveClient
from alive_tools.embedded.stack import EmbeddedStack
from tests.support import (
    SMALL_OUTPUT,
    photo_bytes,
    produce,
    read_topic,
    statuses,
    wait_for,
    write_clip,
)

NEVER = {JobState.SIGNED, JobState.READY, JobState.PUBLISHED}


@pytest.fixture(scope="module")
def ready_job(stack: EmbeddedStack, client: AliveClient, small_photo_module: bytes) -> Job:
    """A real job as the video checkpoint passed it: every attestation in place."""
    job_id = client.submit(small_photo_module, "waves at dusk", output=SMALL_OUTPUT).job_id
    assert wait_for(client, job_id).state == JobState.READY
    record = StageLedger(stack.blob_store()).get(
        PIPELINE.stage_reaching(JobState.READY).name, job_id
    )
    assert record is not None
    return StageOutcome.FromString(record).passed


@pytest.fixture(scope="module")
def small_photo_module() -> bytes:
    return photo_bytes(seed=11)


def settle(stack: EmbeddedStack, job_id: str, timeout_s: float = 60) -> list[StatusEvent]:
    """The job's status events once one says it ended."""
    bootstrap, topic = stack.kafka_bootstrap, stack.settings().topic(STATUS)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = statuses(bootstrap, topic, job_id)
        if any(e.state in (JobState.VETOED, JobState.FAILED) for e in events):
            return events
        time.sleep(0.3)
    raise AssertionError(f"{job_id} did not end: {[JobState.Name(e.state) for e in events]}")


def metric(stack: EmbeddedStack, service: str, name: str) -> float:
    port = stack.services[service].http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as page:
        lines = page.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name))


@pytest.mark.parametrize(
    "topic", [ACCEPTED, PHOTO_CLEARED, PROMPT_CLEARED, GENERATED, SCORED, SIGNED], ids=str
)
def test_a_forged_job_on_an_internal_topic_is_never_signed_or_published(
    stack: EmbeddedStack, ready_job: Job, topic: Topic[Job]
) -> None:
    """Produced straight to the topic (who could write it, Kafka ACLs aside): once with no
    attestations, once with a real job's attestations replayed under another job id."""
    consumer = PIPELINE.consumer(topic)
    assert consumer is not None
    failures_before = metric(stack, consumer.name, "alive_attestation_failures_total")
    bare, replayed = Job(), Job()
    bare.CopyFrom(ready_job)
    del bare.attestations[:]
    replayed.CopyFrom(ready_job)
    expected = {}
    for forged, code in ((bare, "ATTESTATION_MISSING"), (replayed, "ATTESTATION_INVALID")):
        forged.job_id = f"forged-{uuid.uuid4().hex[:12]}"
        expected[forged.job_id] = code
        produce(
            stack.kafka_bootstrap,
            stack.settings().topic(topic),
            forged.SerializeToString(),
            forged.job_id.encode(),
        )
    for job_id, code in expected.items():
        events = settle(stack, job_id)
        assert not [e for e in events if e.state in NEVER], [JobState.Name(e.state) for e in events]
        (veto,) = [e for e in events if e.state == JobState.VETOED]
        assert (veto.stage, list(veto.reason_codes)) == (consumer.name, [code])
    failures = metric(stack, consumer.name, "alive_attestation_failures_total")
    assert failures - failures_before == 2


def test_a_forged_ready_record_is_never_published(
    stack: EmbeddedStack, ready_job: Job, client: AliveClient
) -> None:
    """A READY ledger record written into the store for a new job id (its attestations name
    another job), then a publish request for it."""
    forged = Job()
    forged.CopyFrom(ready_job)
    forged.job_id = f"forged-{uuid.uuid4().hex[:12]}"
    ledger = StageLedger(stack.blob_store())
    ledger.decide(
        PIPELINE.stage_reaching(JobState.READY).name,
        forged.job_id,
        StageOutcome(passed=forged).SerializeToString(),
    )
    request = PublishRequest(job_id=forged.job_id, requested_by="mallory")
    produce(
        stack.kafka_bootstrap,
        stack.settings().topic(PUBLISH_REQUESTS),
        request.SerializeToString(),
        forged.job_id.encode(),
    )
    events = settle(stack, forged.job_id)
    assert [(e.stage, list(e.reason_codes)) for e in events] == [
        ("review", ["ATTESTATION_INVALID"])
    ]
    published = read_topic(stack.kafka_bootstrap, stack.settings().topic(READY))
    assert forged.job_id.encode() not in {r.key for r in published}


def test_another_creators_token_cannot_get_watch_publish_or_cancel(
    stack: EmbeddedStack, ready_job: Job
) -> None:
    owner = stack.client("creator")  # the conftest client's subject, who made ready_job
    assert owner.get(ready_job.job_id).state == JobState.READY
    with stack.client("mallory") as mallory:
        calls = {
            "get": lambda: mallory.get(ready_job.job_id),
            "watch": lambda: list(mallory.watch(ready_job.job_id, timeout_s=5)),
            "publish": lambda: mallory.publish(ready_job.job_id),
            "cancel": lambda: mallory.cancel(ready_job.job_id),
        }
        for name, call in calls.items():
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.NOT_FOUND, name
    anonymous = AliveClient(stack.api_target, token=None, tls_ca=stack.api_keys.tls_ca.read_bytes())
    with anonymous, pytest.raises(grpc.RpcError) as unauthenticated:
        anonymous.get(ready_job.job_id)
    assert unauthenticated.value.code() == grpc.StatusCode.UNAUTHENTICATED
    plaintext = AliveClient(stack.api_target, token=stack.token(), tls_ca=None)
    with plaintext, pytest.raises(grpc.RpcError) as no_tls:
        plaintext.get(ready_job.job_id, timeout_s=5)
    assert no_tls.value.code() == grpc.StatusCode.UNAVAILABLE
    assert owner.get(ready_job.job_id).state == JobState.READY


def test_a_cancelled_job_is_never_ready(stack: EmbeddedStack, small_photo_module: bytes) -> None:
    with stack.client("canceller") as creator:
        job_id = creator.submit(small_photo_module, "waves", output=SMALL_OUTPUT).job_id
        view = creator.cancel(job_id)
        assert view.state == JobState.CANCELLED
        later = creator.submit(small_photo_module, "waves", output=SMALL_OUTPUT).job_id
        assert wait_for(creator, later).state == JobState.READY  # the pipeline went on
        assert creator.get(job_id).state == JobState.CANCELLED
    topic = stack.settings().topic(STATUS)
    states = {e.state for e in statuses(stack.kafka_bootstrap, topic, job_id)}
    assert JobState.CANCELLED in states and not states & NEVER


def test_files_planted_where_outputs_go_are_not_taken(
    stack: EmbeddedStack, small_photo_module: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    planted = tmp_path_factory.mktemp("planted") / "planted.mp4"
    write_clip(planted)
    with stack.client("planter") as creator:
        job_id = creator.submit(small_photo_module, "waves", output=SMALL_OUTPUT).job_id
        folder = stack.blob_root / "videos" / job_id
        folder.mkdir(parents=True, exist_ok=True)
        for step in ("generated", "scored", "signed"):  # the keys outputs once had
            (folder / f"{step}.mp4").write_bytes(planted.read_bytes())
        ready = wait_for(creator, job_id)
    assert ready.state == JobState.READY
    with stack.blob_store().local_copy(ready.video) as video:
        assert video.name not in {"generated.mp4", "scored.mp4", "signed.mp4"}
        assert video.read_bytes() != planted.read_bytes()
        assert verify_video(video, stack.trust_anchor.read_bytes()).trusted


def test_records_that_once_crash_looped_a_stage_are_dead_lettered(
    stack: EmbeddedStack, client: AliveClient, small_photo_module: bytes
) -> None:
    settings, bootstrap = stack.settings(), stack.kafka_bootstrap
    records = {
        b"nul-id": (ACCEPTED, Job(job_id="job\x00id").SerializeToString(), b"INVALID_JOB_ID"),
        b"long-id": (
            PUBLISH_REQUESTS,
            PublishRequest(job_id="j" * 300).SerializeToString(),
            b"JOB_NOT_READY",
        ),
        b"5mb": (REQUESTS, b"\xff" * (5 * 1024 * 1024), b"UNDECODABLE_EVENT"),
    }

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=8 * 1024 * 1024)
        await producer.start()
        for key, (topic, value, _) in records.items():
            await producer.send_and_wait(settings.topic(topic), value, key=key)
        await producer.stop()

    asyncio.run(send())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        dead = {r.key: dict(r.headers) for r in read_topic(bootstrap, settings.topic(DLQ))}
        if all(key in dead for key in records):
            break
        time.sleep(0.3)
    assert {key: dead[key][DLQ_REASON] for key in records} == {
        key: reason for key, (_, _, reason) in records.items()
    }
    assert all(service.alive() for service in stack.services.values())
    job_id = client.submit(small_photo_module, "waves", output=SMALL_OUTPUT).job_id
    assert wait_for(client, job_id).state == JobState.READY
