"""Run one stage in process, with no broker: feed it events, collect what it emits.

``StageHarness`` drives the stage through the same ``EventProcessor`` the runner uses
(decoding, job identity, the ledger, retries, status, vetoes, dead letters), over a real
blob store and ledger in a folder, and keeps every record it would have produced, decoded by
the message type of its topic (alive/pipeline.py)::

    async with StageHarness(PhotoCheckpoint(PhotoCheckpointSettings(), blobs)) as harness:
        emitted = await harness.send(job)
        assert emitted.vetoes[0].reason_codes == ["PHOTO_BLANK"]

Retries do not wait: the harness's sleep returns at once and records the delays asked for.
Harnesses of one stage over one shared store (each with its own store object) act as
replicas of it: handed the same event, one decision stands (tests/test_stage_replicas.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from alive.blobs import StageLedger
from alive.pipeline import DLQ, PIPELINE, STATUS, VETOES, Topic
from alive.processing import DLQ_REASON, EventProcessor, Outbound, Record, check_sizes
from alive.settings import ServiceSettings
from alive.stage import Stage
from alive.telemetry import StageMetrics
from alive.v1.events_pb2 import Job, StatusEvent, VetoEvent
from alive_tools.keys import StageKeys


@dataclass
class DeadLetter:
    """A dead-lettered record: the original bytes and the headers saying why."""

    value: bytes | None
    key: bytes | None
    headers: dict[str, bytes]

    @property
    def reason_code(self) -> str:
        return self.headers[DLQ_REASON].decode()


@dataclass
class Emitted:
    """What the stage produced, by kind, in the order it produced it."""

    outputs: list[Message] = field(default_factory=list)
    statuses: list[StatusEvent] = field(default_factory=list)
    # Progress reports (status events that are not transitions), apart from the statuses.
    progress: list[StatusEvent] = field(default_factory=list)
    vetoes: list[VetoEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def jobs(self) -> list[Job]:
        return [m for m in self.outputs if isinstance(m, Job)]


class _MemorySink:
    """Keeps records instead of producing them, decoded by their topic's message type."""

    def __init__(self, settings: ServiceSettings, output: Topic[Any]) -> None:
        self.emitted = Emitted()
        self._max_request_size = settings.kafka.max_request_size
        # The stage's own output may be one the shared pipeline does not declare (yet).
        topics = [*PIPELINE.topics(), output]
        self._topics: dict[str, Topic[Any]] = {settings.topic(t): t for t in topics}

    async def send(self, records: Sequence[Outbound]) -> None:
        check_sizes(records, self._max_request_size)  # as the Kafka sink does
        for record in records:
            topic = self._topics[record.topic]
            if topic.key == DLQ.key:
                headers = dict(record.headers)
                self.emitted.dead_letters.append(DeadLetter(record.value, record.key, headers))
                continue
            assert topic.message is not None
            message = topic.message.FromString(record.value or b"")
            if topic.key == STATUS.key and message.HasField("progress"):
                self.emitted.progress.append(message)
            elif topic.key == STATUS.key:
                self.emitted.statuses.append(message)
            elif topic.key == VETOES.key:
                self.emitted.vetoes.append(message)
            else:
                self.emitted.outputs.append(message)


class StageHarness:
    def __init__(
        self,
        stage: Stage[Any, Any],
        settings: ServiceSettings | None = None,
        keys: StageKeys | None = None,
    ) -> None:
        self.stage = stage
        self.settings = settings or ServiceSettings()
        # Attestation keys for every stage: ``harness.keys.attest(job, "moderation-photo")``
        # makes a job as an earlier stage would have passed it on.
        self.keys = keys or StageKeys()
        self.ledger = StageLedger(stage.blobs)
        self.metrics = StageMetrics(stage.spec.name, CollectorRegistry())
        self.retry_delays: list[float] = []
        self._sink = _MemorySink(self.settings, stage.spec.emits)
        self._offsets = count()
        self.processor = EventProcessor(
            stage,
            self.settings,
            self._sink,
            self.ledger,
            self.metrics,
            self.keys.keyring(stage.spec.name),
            self._no_wait,
        )

    @property
    def emitted(self) -> Emitted:
        """Everything emitted since the harness was made."""
        return self._sink.emitted

    async def send(self, event: Message | bytes, key: bytes | None = None) -> Emitted:
        """Processes one event (or raw record bytes) as if consumed from the stage's input
        topic; returns only what that event made."""
        before = {kind: len(getattr(self.emitted, kind)) for kind in _KINDS}
        value = event if isinstance(event, bytes) else event.SerializeToString()
        if key is None and isinstance(event, Job):
            key = event.job_id.encode()
        topic = self.settings.topic(self.stage.spec.consumes)
        await self.processor.handle(Record(topic, 0, next(self._offsets), key, value))
        return Emitted(*(getattr(self.emitted, kind)[before[kind] :] for kind in _KINDS))

    def upstream(self, job: Job) -> Job:
        """``job`` with the attestations this stage requires, as the earlier stages would
        have signed it as it is now (a test starting a job part-way down the pipeline)."""
        return self.keys.attest(job, *self.stage.spec.requires)

    async def _no_wait(self, delay_s: float) -> None:
        self.retry_delays.append(delay_s)

    async def __aenter__(self) -> StageHarness:
        await self.stage.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stage.stop()


_KINDS = ("outputs", "statuses", "progress", "vetoes", "dead_letters")
