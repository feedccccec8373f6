"""The whole pipeline on the real embedded stack: broker, Triton and every service."""

from __future__ import annotations

import signal
import time
import urllib.request
import uuid

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from alive.jobs import upload_area
from alive.media import probe_mp4, read_frames
from alive.pipeline import DLQ, PIPELINE, REQUESTS, STATUS, VETOES
from alive.processing import DLQ_OFFSET, DLQ_REASON, DLQ_STAGE, DLQ_TOPIC
from alive.provenance import DIGITAL_SOURCE_TYPE_AI, verify_video
from alive.v1.events_pb2 import ImagePromptRequest, JobState, OutputSpec
from alive_tools.client import AliveClient, Rejected
from alive_tools.embedded.stack import REVIEW_WEB, EmbeddedStack
from services.ingest.settings import IngestSettings
from tests.support import (
    SMALL_FRAMES,
    SMALL_OUTPUT,
    job_of_request,
    looks_encrypted,
    path_of,
    produce,
    read_topic,
    statuses,
    wait_for,
)

PIPELINE_TO_READY = [
    "SUBMITTED",
    "ACCEPTED",
    "PHOTO_CLEARED",
    "PROMPT_CLEARED",
    "GENERATED",
    "SCORED",
    "SIGNED",
    "READY",
]


def test_full_pipeline_makes_a_signed_video_with_sound(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    response = client.submit(small_photo, "waves under a moonlit sky", output=SMALL_OUTPUT, seed=7)
    view = wait_for(client, response.job_id)
    assert path_of(view) == PIPELINE_TO_READY, view

    # At rest every blob is ciphertext: no image or video signature, no EXIF, anywhere.
    stored = [
        p
        for p in stack.blob_root.rglob("*")
        if p.is_file() and response.job_id in p.parts and "keys" not in p.parts
    ]
    assert {p.relative_to(stack.blob_root).parts[0] for p in stored} >= {
        "photos",
        "videos",
        "ledger",
    }
    for path in stored:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue  # a write in flight (retention's markers), its temporary file renamed since
        assert looks_encrypted(data), path

    with stack.blob_store().local_copy(view.video) as video:
        info = probe_mp4(video)
        assert (info.width, info.height, info.frame_count) == (96, 160, SMALL_FRAMES)
        assert info.audio_codec == "aac"
        assert info.audio_duration_s == pytest.approx(info.duration_s, abs=0.05)
        frames = read_frames(video).astype(np.int16)
        steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
        assert (steps > 0.2).all(), f"frames do not move: {steps}"

        check = verify_video(video, stack.trust_anchor.read_bytes())
        assert check.state == "Trusted", check.failure_codes
        assert check.digital_source_type == DIGITAL_SOURCE_TYPE_AI
        assert "inputTo" in check.ingredient_relationships

    client.publish(response.job_id)
    published = wait_for(client, response.job_id, {JobState.PUBLISHED, JobState.VETOED})
    assert path_of(published) == [*PIPELINE_TO_READY, "PUBLISHED"]
    assert [e.stage for e in published.history][1:] == [
        "ingest",
        *PIPELINE.checkpoints[:2],
        "generator",
        "audio",
        "provenance",
        PIPELINE.checkpoints[2],
        "review",
    ]


def test_one_trace_follows_a_job_across_services(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    job_id = client.submit(small_photo, "calm sea", output=SMALL_OUTPUT).job_id
    wait_for(client, job_id)
    records = read_topic(stack.kafka_bootstrap, stack.settings().topic(STATUS))
    traceparents = {
        dict(r.headers)["traceparent"].decode().split("-")[1]
        for r in records
        if r.key == job_id.encode()
    }
    assert len(traceparents) == 1, traceparents


def test_prompt_from_the_term_list_is_vetoed_before_generation(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    job_id = client.submit(small_photo, "a man waving a gun", output=SMALL_OUTPUT).job_id
    view = wait_for(client, job_id)
    assert view.state == JobState.VETOED
    assert view.history[-1].stage == "moderation-prompt"
    assert list(view.reason_codes) == ["PROMPT_WEAPONS"]
    assert not (stack.blob_root / "videos" / job_id).exists()
    vetoes = read_topic(stack.kafka_bootstrap, stack.settings().topic(VETOES))
    assert any(r.key == job_id.encode() for r in vetoes)


def test_corrupt_photo_is_rejected_by_the_api(client: AliveClient) -> None:
    with pytest.raises(Rejected) as rejected:
        client.submit(b"\xff\xd8\xff\xe0 not really a jpeg", "hello", output=SMALL_OUTPUT)
    assert rejected.value.reason_code == "PHOTO_UNDECODABLE"


def test_oversized_photo_is_rejected_before_decoding(client: AliveClient) -> None:
    import io

    from PIL import Image

    bomb = io.BytesIO()
    Image.new("L", (9000, 5000)).save(bomb, format="PNG")  # 45 MP, a few KB on the wire
    with pytest.raises(Rejected) as rejected:
        client.submit(bomb.getvalue(), "", output=SMALL_OUTPUT)
    assert rejected.value.reason_code == "PHOTO_TOO_MANY_PIXELS"


def test_bad_kafka_requests_are_rejected_or_dead_lettered_and_service_goes_on(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    bootstrap, settings = stack.kafka_bootstrap, stack.settings()
    # Undecodable bytes: dead-lettered with the reason and where they came from.
    produce(
        bootstrap, settings.topic(REQUESTS), b"\x08\x96\x01 definitely not protobuf \xff", b"junk"
    )
    # A decodable request whose photo is corrupt: a REJECTED job with a reason code.
    kafka_test = stack.client("kafka-test")  # the creator these requests name
    request_id = str(uuid.uuid4())
    # A publisher uploads through Alive's blob store, which encrypts (alive/encryption.py).
    upload = stack.blob_store().put_bytes(
        upload_area("kafka-test", request_id) + "corrupt.jpg", b"corrupt bytes", "image/jpeg"
    )
    request = ImagePromptRequest(
        request_id=request_id,
        creator_id="kafka-test",
        photo=upload,
        output=SMALL_OUTPUT,
    )
    produce(bootstrap, settings.topic(REQUESTS), request.SerializeToString(), b"corrupt")
    job_id = job_of_request(bootstrap, settings.topic(STATUS), "kafka-test", request_id)
    rejected = wait_for(kafka_test, job_id)
    assert rejected.state == JobState.REJECTED
    assert list(rejected.reason_codes) == ["PHOTO_UNDECODABLE"]
    # A photo reference outside the request's upload area (here that of the request above) is
    # refused: one request cannot name another's upload.
    elsewhere = ImagePromptRequest(
        request_id=str(uuid.uuid4()), creator_id="kafka-test", photo=upload
    )
    produce(bootstrap, settings.topic(REQUESTS), elsewhere.SerializeToString(), b"elsewhere")
    elsewhere_id = job_of_request(
        bootstrap, settings.topic(STATUS), "kafka-test", elsewhere.request_id
    )
    assert list(wait_for(kafka_test, elsewhere_id).reason_codes) == ["PHOTO_REF_NOT_OWN_UPLOAD"]

    dead = [dict(r.headers) for r in read_topic(bootstrap, settings.topic(DLQ)) if r.key == b"junk"]
    assert dead and dead[0][DLQ_REASON] == b"UNDECODABLE_EVENT"
    assert (
        dead[0][DLQ_STAGE] == b"ingest" and dead[0][DLQ_TOPIC] == settings.topic(REQUESTS).encode()
    )
    assert int(dead[0][DLQ_OFFSET]) >= 0

    after = client.submit(small_photo, "", output=SMALL_OUTPUT).job_id
    assert wait_for(client, after).state == JobState.READY


def test_the_same_request_twice_makes_one_job_and_one_video(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    bootstrap, settings = stack.kafka_bootstrap, stack.settings()
    upload = stack.blob_store().put_bytes(
        upload_area("kafka-test", "twice-1") + "twice.jpg", small_photo, "image/jpeg"
    )
    request = ImagePromptRequest(
        request_id="twice-1",
        creator_id="kafka-test",
        photo=upload,
        prompt="birds over a park",
        output=SMALL_OUTPUT,
    )
    for _ in range(2):
        produce(bootstrap, settings.topic(REQUESTS), request.SerializeToString(), b"twice-1")
    job_id = job_of_request(bootstrap, settings.topic(STATUS), "kafka-test", "twice-1")
    kafka_test = stack.client("kafka-test")
    assert wait_for(kafka_test, job_id).state == JobState.READY
    # The API's idempotency key (scoped to the creator) finds the same job too.
    again = kafka_test.submit(small_photo, "", request_id="twice-1")
    assert again.existing and again.job_id == job_id
    other_creator = client.submit(small_photo, "", request_id="twice-1", output=SMALL_OUTPUT)
    assert other_creator.job_id != job_id
    time.sleep(1.0)  # let any duplicate finish its way through
    events = statuses(bootstrap, settings.topic(STATUS), job_id)
    states = [JobState.Name(e.state) for e in events]
    assert states.count("ACCEPTED") == 1 and states.count("READY") == 1, states
    made = sorted(p.name.split("-")[0] for p in (stack.blob_root / "videos" / job_id).iterdir())
    assert made == ["generated", "scored", "signed"]


def test_a_service_killed_mid_job_recovers_and_the_job_completes(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    # Big enough that generation takes a few seconds, so the kill lands inside it.
    output = OutputSpec(width=576, height=1024, fps=24, duration_ms=3000)
    job_id = client.submit(small_photo, "clouds drifting", output=output).job_id
    wait_for(client, job_id, {JobState.PROMPT_CLEARED}, timeout_s=60)
    time.sleep(0.3)
    stack.kill("generator", signal.SIGKILL)
    assert client.get(job_id).state == JobState.PROMPT_CLEARED  # killed before it finished
    stack.restart("generator")
    view = wait_for(client, job_id, timeout_s=180)
    assert view.state == JobState.READY, path_of(view)


def test_generator_retries_while_triton_is_down(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    stack.triton.stop()
    try:
        job_id = client.submit(small_photo, "", output=SMALL_OUTPUT).job_id
        wait_for(client, job_id, {JobState.PROMPT_CLEARED})
        time.sleep(1.5)
        assert client.get(job_id).state == JobState.PROMPT_CLEARED  # waiting, not failed
    finally:
        stack.triton.start()
    assert wait_for(client, job_id).state == JobState.READY
    port = stack.services["generator"].http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as metrics:
        text = metrics.read().decode()
    assert 'alive_errors_total{kind="transient",service="generator"}' in text


def test_sigterm_shuts_a_service_down_cleanly(stack: EmbeddedStack) -> None:
    service = stack.services["audio"]
    stack.kill("audio", signal.SIGTERM)
    assert service.proc is not None and service.proc.returncode == 0
    stack.restart("audio")


def test_api_errors_for_unknown_jobs_and_bad_requests(
    client: AliveClient, small_photo: bytes
) -> None:
    with pytest.raises(grpc.RpcError) as missing:
        client.get(str(uuid.uuid4()))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(Rejected) as control:
        client.submit(small_photo, "hello\x1b[31m", output=SMALL_OUTPUT)
    assert control.value.reason_code == "PROMPT_CONTROL_CHARACTERS"
    with pytest.raises(Rejected) as size:
        client.submit(small_photo, "", output=OutputSpec(width=4000, height=160))
    assert size.value.reason_code == "OUTPUT_SIZE_OUT_OF_RANGE"


@pytest.mark.parametrize("request_id", ["../../x", "r" * 129, "nul\x00"])
def test_the_api_bounds_ids_before_any_work(
    client: AliveClient, small_photo: bytes, request_id: str
) -> None:
    with pytest.raises(Rejected) as rejected:
        client.submit(small_photo, "waves", output=SMALL_OUTPUT, request_id=request_id)
    assert rejected.value.reason_code == "INVALID_REQUEST_ID"


@pytest.mark.parametrize("subject", ["c" * 200, "nul\x00", "../x"])
def test_a_token_naming_no_valid_creator_is_refused(
    stack: EmbeddedStack, small_photo: bytes, subject: str
) -> None:
    with stack.client(subject) as caller, pytest.raises(grpc.RpcError) as refused:
        caller.submit(small_photo, "waves", output=SMALL_OUTPUT)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_huge_prompt_is_refused_by_its_size(client: AliveClient, small_photo: bytes) -> None:
    with pytest.raises(Rejected) as rejected:
        client.submit(small_photo, "x" * 5_000_000, output=SMALL_OUTPUT)
    assert rejected.value.reason_code == "PROMPT_TOO_LONG"
    assert "bytes" in rejected.value.args[0]  # the byte bound, checked before normalising


def test_job_status_survives_a_restart_of_ingest(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    job_id = client.submit(small_photo, "", output=SMALL_OUTPUT).job_id
    before = wait_for(client, job_id)
    stack.kill("ingest", signal.SIGTERM)
    stack.restart("ingest")
    after = client.get(job_id)
    assert after.state == before.state == JobState.READY
    assert path_of(after) == path_of(before)


def test_metrics_and_health_endpoints(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    vetoed = client.submit(small_photo, "a rifle on the table", output=SMALL_OUTPUT).job_id
    assert wait_for(client, vetoed).state == JobState.VETOED
    for name, service in stack.services.items():
        base = f"http://127.0.0.1:{service.http_port}"
        with urllib.request.urlopen(f"{base}/healthz") as health:
            assert health.status == 200, name
        with urllib.request.urlopen(f"{base}/readyz") as ready:
            assert ready.status == 200, name
        with urllib.request.urlopen(f"{base}/metrics") as metrics:
            text = metrics.read().decode()
        if name == REVIEW_WEB:  # the review queue's app, not a stage: metrics of its own
            assert "alive_review_queue_depth" in text, name
            assert "alive_review_queue_oldest_age_seconds" in text, name
            continue
        assert "alive_stage_latency_seconds" in text and "alive_in_flight" in text, name
    port = stack.services["moderation-prompt"].http_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as metrics:
        text = metrics.read().decode()
    assert 'alive_vetoes_total{checkpoint="moderation-prompt",reason="PROMPT_WEAPONS"}' in text


def test_logs_never_contain_the_prompt(
    stack: EmbeddedStack, client: AliveClient, small_photo: bytes
) -> None:
    marker = uuid.uuid4().hex[:12]
    passed = client.submit(small_photo, f"waves at dusk {marker}", output=SMALL_OUTPUT).job_id
    vetoed = client.submit(small_photo, f"a gun {marker}", output=SMALL_OUTPUT).job_id
    assert wait_for(client, passed).state == JobState.READY
    assert wait_for(client, vetoed).state == JobState.VETOED
    logs = list(stack.logs.glob("*.log"))
    assert any(passed in log.read_text(errors="replace") for log in logs)  # logs are there
    for log in logs:
        assert marker not in log.read_text(errors="replace"), log.name


def test_the_api_answers_standard_health_checks_and_hides_reflection(
    stack: EmbeddedStack,
) -> None:
    tls = grpc.ssl_channel_credentials(stack.api_keys.tls_ca.read_bytes())
    with grpc.secure_channel(stack.api_target, tls) as channel:
        checker = health_pb2_grpc.HealthStub(channel)
        for service in ("", "alive.v1.Alive"):
            answer = checker.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        listing = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as off:
            next(listing)
        assert off.value.code() == grpc.StatusCode.UNIMPLEMENTED  # off unless asked for


def test_a_creator_over_the_in_flight_cap_is_told_to_retry(
    stack: EmbeddedStack, small_photo: bytes
) -> None:
    cap = IngestSettings().max_jobs_in_flight_per_creator
    creator = f"burst-{uuid.uuid4().hex[:8]}"
    client, other_client = stack.client(creator), stack.client(f"{creator}-b")
    jobs = [client.submit(small_photo, "waves", output=SMALL_OUTPUT).job_id for _ in range(cap)]
    with pytest.raises(grpc.RpcError) as refused:
        client.submit(small_photo, "waves", output=SMALL_OUTPUT)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["alive-reason-code"] == "CREATOR_JOBS_IN_FLIGHT"
    assert int(trailers["alive-retry-after-s"]) > 0
    other = other_client.submit(small_photo, "waves", output=SMALL_OUTPUT)
    for job_id in jobs:
        assert wait_for(client, job_id).state == JobState.READY
    assert wait_for(other_client, other.job_id).state == JobState.READY
