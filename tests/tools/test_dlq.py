"""``alive dlq list|replay`` on a real broker: dead letters as the stages write them are
listed with why, a dry run sends nothing, and a replay re-publishes the selected ones to
their stage's topic with their original key, partition and value (kept in the blob store:
a dead letter holds a reference, never the value), never to a topic a forged header names,
without touching the ledger."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from alive.blobs import BlobStore, StageLedger, open_configured_blob_store
from alive.kafka import ensure_topics, make_producer
from alive.pipeline import ACCEPTED, DLQ, PIPELINE, PUBLISHED
from alive.processing import DLQ_TOPIC, Outbound, Record, dead_letter
from alive.reasons import Finding, ReasonCode
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import Job, StageOutcome
from alive_tools import cli
from alive_tools.dlq import REPLAYED_FROM
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.keys import ensure_blob_keyring
from tests.support import read_topic

TRACE = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")


def letter_of(
    blobs: BlobStore, dlq: str, record: Record, stage: str, finding: Finding, job_id: str | None
) -> Outbound:
    """A dead letter as a stage writes it: the value in the store, a reference on alive.dlq."""
    stored = blobs.put_bytes(
        f"dlq/_unidentified/{stage}-{record.offset}", record.value or b"", "application/x"
    )
    return dead_letter(
        record,
        dlq,
        stage,
        finding,
        job_id,
        payload_ref=stored.uri,
        payload_sha256=stored.sha256,
    )


def job_record(settings: ServiceSettings, job_id: str, offset: int) -> Record:
    return Record(
        topic=settings.topic(ACCEPTED),
        partition=1,
        offset=offset,
        key=job_id.encode(),
        value=Job(job_id=job_id).SerializeToString(),
        headers=(TRACE,),
    )


async def publish(settings: ServiceSettings, letters: list[Outbound]) -> None:
    producer = make_producer(settings, "dlq-test")
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(
                letter.topic, letter.value, key=letter.key, headers=list(letter.headers)
            )
    finally:
        await producer.stop()


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    return int(done.value.code or 0)


def test_dead_letters_are_listed_and_replayed_to_the_stage_that_gave_up(
    broker: EmbeddedBroker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topics = {t.key: f"{t.default_name}-{suffix}" for t in PIPELINE.topics()}
    monkeypatch.setenv("ALIVE_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap_servers)
    monkeypatch.setenv("ALIVE_BLOB_URL", str(tmp_path / "blobs"))
    monkeypatch.setenv("ALIVE_BLOB_KEYRING_PATH", str(ensure_blob_keyring(tmp_path / "keys")))
    for key, name in topics.items():
        monkeypatch.setenv(f"ALIVE_TOPICS__{key.upper()}", name)
    settings = ServiceSettings()
    assert settings.topic(DLQ) == topics["dlq"]
    asyncio.run(ensure_topics(settings))
    blobs = open_configured_blob_store(settings)
    ledger = StageLedger(blobs)
    dlq, stage = settings.topic(DLQ), "moderation-photo"
    # The store was down when the stage looked the job up: dead-lettered, never finished.
    unfinished = letter_of(
        blobs,
        dlq,
        job_record(settings, "job-a", 7),
        stage,
        Finding(ReasonCode.UNPROCESSABLE_EVENT, "ledger: OSError: unreachable"),
        None,
    )
    # A job that failed for good: its FAILED outcome is in the ledger.
    failed = letter_of(
        blobs,
        dlq,
        job_record(settings, "job-b", 8),
        stage,
        Finding(ReasonCode.RETRIES_EXHAUSTED, "timed out"),
        "job-b",
    )
    outcome = StageOutcome(failed_reason_code=ReasonCode.RETRIES_EXHAUSTED)
    ledger.decide(stage, "job-b", outcome.SerializeToString())
    # Someone who may write alive.dlq names a topic the stage does not read.
    forged_headers = [
        (k, settings.topic(PUBLISHED).encode() if k == DLQ_TOPIC else v)
        for k, v in unfinished.headers
    ]
    forged = Outbound(dlq, b"anything", b"job-c", forged_headers)
    asyncio.run(publish(settings, [unfinished, failed, forged]))

    assert run(["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((x["reason"], x["job_id"], x["replayable"]) for x in listed) == sorted(
        [
            (ReasonCode.UNPROCESSABLE_EVENT, "", True),
            (ReasonCode.RETRIES_EXHAUSTED, "job-b", True),
            (ReasonCode.UNPROCESSABLE_EVENT, "", False),
        ]
    )
    first = next(x for x in listed if x["replayable"] and not x["job_id"])
    assert first["topic"] == settings.topic(ACCEPTED) and first["offset"] == 7
    assert next(x for x in listed if x["job_id"] == "job-b")["ledger"] == (
        f"{stage} finished the job: a no-op"
    )
    assert all("value" not in x for x in listed)  # a dead letter may hold a prompt

    assert run(["dlq", "replay"]) == 2  # no selection: never "all" by accident
    assert run(["dlq", "replay", "--all"]) == 0  # a dry run
    assert read_topic(broker.bootstrap_servers, settings.topic(ACCEPTED)) == []

    assert run(["dlq", "replay", "--reason", ReasonCode.UNPROCESSABLE_EVENT, "--apply"]) == 1
    out = capsys.readouterr().out
    assert "refused" in out and "sent" in out  # the forged one is refused, the other sent
    replayed = read_topic(broker.bootstrap_servers, settings.topic(ACCEPTED))
    assert [(r.key, r.partition, r.value) for r in replayed] == [
        (b"job-a", 1, Job(job_id="job-a").SerializeToString())
    ]
    headers = dict(replayed[0].headers)
    assert not any(k.startswith("alive-dlq-") for k in headers)
    assert headers[REPLAYED_FROM] == first["dlq"].encode()
    assert read_topic(broker.bootstrap_servers, settings.topic(PUBLISHED)) == []

    assert run(["dlq", "replay", "--job-id", "job-b", "--apply"]) == 0
    assert len(read_topic(broker.bootstrap_servers, settings.topic(ACCEPTED))) == 2
    assert ledger.get(stage, "job-b") == outcome.SerializeToString()  # untouched
