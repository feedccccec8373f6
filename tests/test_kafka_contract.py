"""Another service, on another Kafka client (librdkafka via confluent-kafka), following
docs/topics.md: put the photo in the request's upload area of the blob store, publish an
ImagePromptRequest, learn the job id from alive.status (the event naming its request) and
read on until the job is READY."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from alive.jobs import upload_area
from alive.media import probe_mp4
from alive.v1.events_pb2 import ImagePromptRequest, JobState, StatusEvent
from alive_tools.embedded.stack import EmbeddedStack
from tests.support import SMALL_FRAMES, SMALL_OUTPUT, photo_bytes


def test_an_independent_client_submits_and_reads_the_result(stack: EmbeddedStack) -> None:
    bootstrap = stack.kafka_bootstrap
    request_id = str(uuid.uuid4())
    # Through Alive's blob store, which encrypts it (docs/topics.md).
    upload = stack.blob_store().put_bytes(
        upload_area("other-service", request_id) + "photo.png",
        photo_bytes(fmt="PNG", seed=3),
        "image/png",
    )
    request = ImagePromptRequest(
        request_id=request_id,
        creator_id="other-service",
        photo=upload,
        prompt="rain on a city street",
        output=SMALL_OUTPUT,
        submitted_at_ms=int(time.time() * 1000),
    )
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    producer.produce("alive.requests", request.SerializeToString(), key=request_id.encode())
    assert producer.flush(10) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            # The embedded broker holds a JoinGroup for half the session timeout.
            "session.timeout.ms": 2000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe(["alive.status"])
    job_id = ""
    seen: list[StatusEvent] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and not any(e.state == JobState.READY for e in seen):
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            event = StatusEvent.FromString(message.value())
            if (event.creator_id, event.request_id) == ("other-service", request_id):
                job_id = job_id or event.job_id
            if job_id and event.job_id == job_id:
                seen.append(event)
    finally:
        consumer.close()

    ready = [e for e in seen if e.state == JobState.READY]
    assert ready, [JobState.Name(e.state) for e in seen]
    with stack.blob_store().local_copy(ready[0].video) as video:
        info = probe_mp4(video)
    assert info.frame_count == SMALL_FRAMES and info.audio_codec == "aac"
