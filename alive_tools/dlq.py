"""Dead letters: list them, and re-drive them to the stage that gave up on them.

``alive dlq list`` shows every record on alive.dlq with why it is there (the alive-dlq-*
headers that alive/processing.py ``dead_letter`` sets), never its value (it may hold a
prompt). ``alive dlq replay`` re-publishes the selected ones (by job id, reason code, stage,
or all) to the topic they were read from, on the same partition, with their original key,
value and headers (the alive-dlq-* ones removed, ``REPLAYED_FROM`` added), so the stage
reads them again. Without ``--apply`` it only says what it would do.

Replay is safe because stages are idempotent, not because this tool decides: a stage skips a
job its ledger says it has finished (passed, vetoed or failed), so re-driving a finished
job is a no-op, and nothing here writes the ledger. What a replay can re-drive is a record
whose job the stage never finished: one dead-lettered before the ledger was read (the store
was down: UNPROCESSABLE_EVENT), or whose too-big value went to the blob store. A job that
ended FAILED stays FAILED (its ledger entry and terminal state stand); to try it again,
submit it anew with a new request id. The dry run shows, per record, what the ledger says.

A dead letter's headers could be forged by anyone who may write alive.dlq, so a record is
replayed only to the topic its named stage consumes (alive/pipeline.py), never elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from alive.blobs import BlobStore, StageLedger
from alive.kafka import make_consumer, make_producer
from alive.pipeline import DLQ, PIPELINE
from alive.processing import (
    DLQ_ERROR,
    DLQ_JOB_ID,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_PAYLOAD_REF,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TOPIC,
)
from alive.settings import ServiceSettings

# On a replayed record: where on alive.dlq it came from, "<partition>:<offset>".
REPLAYED_FROM = "alive-replayed-from"


@dataclass(frozen=True)
class DeadLetter:
    """One record on alive.dlq: where it is, why it is there, and the original record."""

    partition: int
    offset: int
    reason: str
    error: str
    stage: str
    topic: str  # the original record's
    original_partition: int
    original_offset: int
    job_id: str
    payload_ref: str  # the blob holding the value, when it was too big to dead-letter whole
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]  # the original record's

    @property
    def where(self) -> str:
        return f"{self.partition}:{self.offset}"


@dataclass(frozen=True)
class Selection:
    """Which dead letters a replay takes: those matching every criterion given; with none
    given, ``everything`` must be set (a replay of all is never an accident)."""

    job_ids: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    stages: frozenset[str] = frozenset()
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.job_ids or self.reasons or self.stages or self.everything)

    def takes(self, letter: DeadLetter) -> bool:
        return (
            (not self.job_ids or letter.job_id in self.job_ids)
            and (not self.reasons or letter.reason in self.reasons)
            and (not self.stages or letter.stage in self.stages)
        )


@dataclass(frozen=True)
class Replay:
    """What replaying one dead letter does (or would do, in a dry run)."""

    letter: DeadLetter
    # None: it can be re-published; else why not (nothing is sent).
    refused: str | None
    # What the stage's ledger says of the job now: "" (not finished: the stage will work
    # on it), or the outcome it holds (the stage will skip it: a no-op).
    ledger: str
    sent: bool = False


def _header(headers: Sequence[tuple[str, bytes]], name: str) -> str:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return ""


def _as_letter(record: object) -> DeadLetter:
    headers = tuple((k, bytes(v)) for k, v in record.headers)  # type: ignore[attr-defined]

    def number(name: str) -> int:
        text = _header(headers, name)
        return int(text) if text.isdigit() else -1

    return DeadLetter(
        partition=record.partition,  # type: ignore[attr-defined]
        offset=record.offset,  # type: ignore[attr-defined]
        reason=_header(headers, DLQ_REASON),
        error=_header(headers, DLQ_ERROR),
        stage=_header(headers, DLQ_STAGE),
        topic=_header(headers, DLQ_TOPIC),
        original_partition=number(DLQ_PARTITION),
        original_offset=number(DLQ_OFFSET),
        job_id=_header(headers, DLQ_JOB_ID),
        payload_ref=_header(headers, DLQ_PAYLOAD_REF),
        key=record.key,  # type: ignore[attr-defined]
        value=record.value,  # type: ignore[attr-defined]
        headers=tuple((k, v) for k, v in headers if not k.startswith("alive-dlq-")),
    )


async def read_dead_letters(settings: ServiceSettings) -> list[DeadLetter]:
    """Every record on alive.dlq now, oldest first per partition (no consumer group)."""
    topic = settings.topic(DLQ)
    consumer = make_consumer(settings, group_id=None, client_id="alive-dlq")
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            raise RuntimeError(f"topic {topic} does not exist")
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        letters: list[DeadLetter] = []
        while not await _read_to(consumer, end):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                letters.extend(_as_letter(r) for r in records)
        return sorted(letters, key=lambda letter: (letter.partition, letter.offset))
    finally:
        await consumer.stop()


async def _read_to(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    return all([await consumer.position(tp) >= offset for tp, offset in end.items()])


def plan(
    settings: ServiceSettings, ledger: StageLedger, letters: Sequence[DeadLetter]
) -> list[Replay]:
    """What replaying each letter would do; sends nothing."""
    return [_plan_one(settings, ledger, letter) for letter in letters]


def _plan_one(settings: ServiceSettings, ledger: StageLedger, letter: DeadLetter) -> Replay:
    try:
        consumes = settings.topic(PIPELINE.stage(letter.stage).consumes)
    except KeyError:
        return Replay(letter, f"no stage {letter.stage!r} in the pipeline", "")
    if letter.topic != consumes:
        return Replay(letter, f"{letter.stage} reads {consumes}, not {letter.topic!r}", "")
    if letter.original_partition < 0:
        return Replay(letter, "no original partition in its headers", "")
    if letter.value is None and not letter.payload_ref:
        return Replay(letter, "no value and no payload reference", "")
    return Replay(letter, None, _ledger_says(ledger, letter))


def _ledger_says(ledger: StageLedger, letter: DeadLetter) -> str:
    if not letter.job_id or not StageLedger.valid_job_id(letter.job_id):
        return ""
    if ledger.get(letter.stage, letter.job_id) is not None:
        return f"{letter.stage} finished the job: a no-op"
    if ledger.is_cancelled(letter.job_id):
        return "the job was cancelled: a no-op"
    return ""


async def replay(
    settings: ServiceSettings, blobs: BlobStore, planned: Sequence[Replay]
) -> list[Replay]:
    """Re-publishes every planned letter that is not refused, to its original topic and
    partition with its original key, value (from the blob store for a too-big one) and
    headers; returns the plan with ``sent`` set. Every send is acknowledged before it
    returns."""
    producer = make_producer(settings, client_id="alive-dlq")
    await producer.start()
    done: list[Replay] = []
    try:
        for item in planned:
            if item.refused is not None:
                done.append(item)
                continue
            letter = item.letter
            value = letter.value
            if value is None:
                key = blobs.key_for(letter.payload_ref)
                value = await asyncio.to_thread(blobs.read_key, key) if key else None
                if value is None:
                    done.append(
                        Replay(letter, f"payload {letter.payload_ref} not found", item.ledger)
                    )
                    continue
            headers = [*letter.headers, (REPLAYED_FROM, letter.where.encode())]
            await producer.send_and_wait(
                letter.topic,
                value,
                key=letter.key,
                partition=letter.original_partition,
                headers=headers,
            )
            done.append(Replay(letter, None, item.ledger, sent=True))
    finally:
        await producer.stop()
    return done
