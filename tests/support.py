"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from PIL import Image

from alive.encryption import MAGIC
from alive.jobs import SETTLED_STATES
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, OutputSpec, StatusEvent
from alive_tools.client import AliveClient
from alive_tools.embedded.ports import free_port
from alive_tools.photo_cases import with_text

# Small enough to keep the suite fast, big enough to show motion: 12 frames of 96x160.
SMALL_OUTPUT = OutputSpec(width=96, height=160, fps=12, duration_ms=1000)
SMALL_FRAMES = 12

# Test stacks draw no random review sample: a test that publishes a clean job expects it
# PUBLISHED; jobs that wait for a person are made by marking them
# (tests/services/review/test_browser.py).
NO_REVIEW_SAMPLE = {"ALIVE_REVIEW__HUMAN_SAMPLE_RATE": "0"}

# What stored media would show if it were not encrypted: each file type's opening bytes,
# long enough that random ciphertext does not hold them by chance (a 3-byte JPEG marker is
# in about one 700 KB ciphertext in twenty).
MEDIA_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"ftypisom", b"ftypmp42", b"JFIF\x00", b"Exif\x00\x00")


def looks_encrypted(data: bytes) -> bool:
    """Alive's ciphertext (alive/encryption.py), with no media signature anywhere in it."""
    return data.startswith(MAGIC) and not any(s in data for s in MEDIA_SIGNATURES)


def photo_bytes(width: int = 160, height: int = 120, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A small synthetic landscape: sky gradient over textured ground."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    sky = np.concatenate([np.full_like(y, 90), 140 + 60 * y, np.full_like(y, 230)], axis=2)
    ground = np.stack(
        [np.full((height, 1), 70), np.full((height, 1), 120), np.full((height, 1), 50)], axis=2
    ).astype(float)
    image = np.where(y < 0.55, sky, ground) * np.ones((1, width, 1))
    image += rng.normal(0, 12, image.shape)
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out, format=fmt)
    return out.getvalue()


def wait_for(
    client: AliveClient,
    job_id: str,
    states: set[JobState.ValueType] | None = None,
    timeout_s: float = 120,
) -> JobView:
    """Polls Get until the job reaches one of ``states`` (default: any end state)."""
    wanted = states or SETTLED_STATES
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            view = client.get(job_id)
            if view.state in wanted:
                return view
        except Exception:  # NOT_FOUND until the status view has the job
            view = None
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not reach {wanted}; last: {view}")
        time.sleep(0.1)


def path_of(view: JobView) -> list[str]:
    return [JobState.Name(e.state) for e in view.history]


def read_topic(bootstrap: str, topic: str, timeout_s: float = 3.0) -> list[ConsumerRecord]:
    """Every record on ``topic`` so far (no consumer group, nothing committed)."""

    async def read() -> list[ConsumerRecord]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
        )
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            end = await consumer.end_offsets(partitions)
            records: list[ConsumerRecord] = []
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not await _caught_up(consumer, end):
                for batch in (await consumer.getmany(timeout_ms=200)).values():
                    records.extend(batch)
            return records
        finally:
            await consumer.stop()

    return asyncio.run(read())


async def _caught_up(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= offset for tp, offset in end.items()])


def produce(bootstrap: str, topic: str, value: bytes, key: bytes | None = None) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())


def job_of_request(
    bootstrap: str, status_topic: str, creator_id: str, request_id: str, timeout_s: float = 60
) -> str:
    """The job id of a request published on Kafka, as a publisher learns it: from the first
    status event that names the request (job ids cannot be computed without ingest's key)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for record in read_topic(bootstrap, status_topic):
            event = StatusEvent.FromString(record.value)
            if (event.creator_id, event.request_id) == (creator_id, request_id):
                return event.job_id
        time.sleep(0.2)
    raise TimeoutError(f"no status names request {request_id!r} of {creator_id!r}")


def statuses(bootstrap: str, status_topic: str, job_id: str) -> list[StatusEvent]:
    events = [StatusEvent.FromString(r.value) for r in read_topic(bootstrap, status_topic)]
    return [e for e in events if e.job_id == job_id]


def write_clip(
    path: Path,
    width: int = 64,
    height: int = 112,
    frames: int = 12,
    audio_length: float | None = 1.0,
    text: str = "",
    image: np.ndarray | None = None,
) -> None:
    """A small H.264 yuv420p clip at 12 fps with moving content (or ``image``, drifting),
    ``text`` written on every frame, and an AAC track ``audio_length`` times as long as the
    video (None: none)."""
    fps, rate = 12, 48_000
    y, x = np.mgrid[0:height, 0:width]
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = None if audio_length is None else out.add_stream("aac", rate=rate, layout="stereo")
        for t in range(frames):
            if image is not None:
                rgb = np.roll(image[:height, :width], t, axis=1)
            else:
                rgb = np.stack([(x * 4 + t * 16) % 256, (y * 2) % 256, np.full_like(x, 128)], -1)
            frame = with_text(rgb.astype(np.uint8), text) if text else rgb.astype(np.uint8)
            out.mux(video.encode(av.VideoFrame.from_ndarray(frame, "rgb24")))
        out.mux(video.encode())
        if audio is None or audio_length is None:
            return
        n = int(rate * frames * audio_length) // fps
        tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / rate).astype(np.float32)
        sound = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        sound.sample_rate = rate
        out.mux(audio.encode(sound))
        out.mux(audio.encode())


class MotoS3:
    """A real S3 API on loopback: moto's server in its own process (never moto in process),
    with a bucket and the AWS_* environment a client of it needs."""

    BUCKET = "alive-test"

    def __init__(self, log_path: Path, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self.endpoint = f"http://{host}:{self.port}"
        self._log = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def environment(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )

    def start(self) -> None:
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", self.host, "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                break
            except OSError as exc:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    log = self._log.read_text()[-2000:]
                    raise RuntimeError(f"moto did not start: {log}") from exc
                time.sleep(0.1)
        self.client().create_bucket(Bucket=self.BUCKET)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
