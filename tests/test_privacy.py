"""Privacy over full runs of the real stack (broker, Triton, every service): no prompt and no
creator id in any service's log or any exported span; the prompt kept in no ledger entry;
the training choice in the video's manifest; an erased job leaves no byte behind, and a
replay of its old events brings nothing back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from aiokafka import AIOKafkaProducer

from alive.pipeline import ACCEPTED, PROMPT_CLEARED, REQUESTS
from alive.provenance import verify_video
from alive.v1.events_pb2 import JobState
from alive_tools.embedded.stack import EmbeddedStack
from tests.support import SMALL_OUTPUT, read_topic, wait_for

# Distinctive, harmless, and nowhere else in the suite.
PROMPT = "make the lighthouse waves shimmer under violet lanterns"
CREATOR = "privacy-scan-creator-5e1d"


def telemetry_files(stack: EmbeddedStack) -> dict[Path, str]:
    """Every service's log and every span exported, by file."""
    paths = [*stack.logs.glob("*.log"), *(stack.workdir / "traces").glob("*.jsonl")]
    return {path: path.read_text(errors="replace") for path in paths}


def test_a_full_run_keeps_the_prompt_and_the_creator_out_of_logs_spans_and_ledger(
    stack: EmbeddedStack, small_photo: bytes
) -> None:
    with stack.client(subject=CREATOR) as api:
        job_id = api.submit(
            small_photo, PROMPT, output=SMALL_OUTPUT, training_use_consent=True
        ).job_id
        assert wait_for(api, job_id).state == JobState.READY
        api.publish(job_id)
        published = wait_for(api, job_id, {JobState.PUBLISHED, JobState.VETOED})
        assert published.state == JobState.PUBLISHED, list(published.reason_codes)

    files = telemetry_files(stack)
    traces = {p.stem: text for p, text in files.items() if p.suffix == ".jsonl"}
    # The scan sees the run: spans of the API and of every stage name the job.
    traced = {service for service, text in traces.items() if job_id in text}
    assert {"ingest", "moderation-prompt", "generator", "audio", "review"} <= traced, traced
    for path, text in files.items():
        assert PROMPT not in text, f"the prompt is in {path.name}"
        assert CREATOR not in text, f"the creator id is in {path.name}"

    blobs = stack.blob_store()
    for key in blobs.keys_under("ledger/"):
        assert PROMPT.encode() not in (blobs.read_key(key) or b""), key

    with blobs.local_copy(published.video) as video:
        check = verify_video(video, stack.trust_anchor.read_bytes())
    assert check.alive_assertion is not None
    assert check.alive_assertion["parameters"]["training_use_consent"] is True


def replay(stack: EmbeddedStack, job_id: str, topics: list[str]) -> int:
    """Sends every record of the job on ``topics`` again, as they were; how many."""
    bootstrap = stack.broker.bootstrap_servers
    records = [
        r for topic in topics for r in read_topic(bootstrap, topic) if r.key == job_id.encode()
    ]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for r in records:
                await producer.send_and_wait(r.topic, r.value, key=r.key, headers=list(r.headers))
        finally:
            await producer.stop()

    asyncio.run(send())
    return len(records)


def wait_for_log(stack: EmbeddedStack, service: str, *needles: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        lines = stack.log_tail(service, 200_000).splitlines()
        if any(all(n in line for n in needles) for line in lines):
            return
        time.sleep(0.5)
    pytest.fail(f"{service} never logged {needles}")


def test_an_erased_job_leaves_nothing_and_a_replay_brings_nothing_back(
    stack: EmbeddedStack, small_photo: bytes
) -> None:
    with stack.client(subject="erasure-creator") as api:
        job_id = api.submit(small_photo, PROMPT, output=SMALL_OUTPUT).job_id
        assert wait_for(api, job_id).state == JobState.READY
        receipt = api.erase(job_id=job_id)
        assert list(receipt.job_ids) == [job_id]
        # The upload may be gone already: retention deletes it once ingest took the job up.
        assert receipt.deleted["blobs.videos"] == 3 and receipt.deleted["blobs.uploads"] <= 1
        with pytest.raises(grpc.RpcError) as gone:
            api.get(job_id)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND

    def left_behind() -> list[str]:
        blobs = stack.blob_store()
        return [
            key
            for key in blobs.keys_under("")
            if (job_id in key or "erasure-creator" in key) and key != f"ledger/erased/{job_id}"
        ]

    assert left_behind() == []
    settings = stack.settings()
    topics = [settings.topic(t) for t in (REQUESTS, ACCEPTED, PROMPT_CLEARED)]
    assert replay(stack, job_id, topics) == 3
    for service in ("ingest", "moderation-photo", "generator"):
        wait_for_log(stack, service, "erased; skipping", job_id)
    assert left_behind() == []
    with stack.client(subject="erasure-creator") as api, pytest.raises(grpc.RpcError) as gone:
        api.get(job_id)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
