"""What a pipeline stage is: the one class a service file implements.

A stage reads one protobuf event type from one topic and, for each event, returns the job
to send on (``Job``), or a ``Veto`` with reason codes. It raises ``TransientError`` when a
retry may help (a dependency is down) and ``PermanentError`` when it cannot (the runner
dead-letters the event and marks the job failed). Everything else (consuming, producing,
status events, the ledger, retries, metrics, traces, commits) is the runner's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from alive.blobs import BlobStore
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import Job, JobState, Verdict

EventT = TypeVar("EventT", bound=Message)
SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


@dataclass(frozen=True)
class JobIdentity:
    job_id: str
    request_id: str = ""
    creator_id: str = ""


@dataclass(frozen=True)
class Veto:
    """A stage's "no": the job stops here, with reason codes (docs/reason-codes.md)."""

    reason_codes: tuple[str, ...]
    detail: str = ""
    scores: Mapping[str, float] = field(default_factory=dict)


class PermanentError(Exception):
    """Retrying will not help: the event is dead-lettered and the job fails."""

    def __init__(self, reason_code: str, detail: str) -> None:
        super().__init__(f"{reason_code}: {detail}")
        self.reason_code = reason_code
        self.detail = detail


class TransientError(Exception):
    """A retry with backoff may help (e.g. Triton unavailable)."""


@dataclass
class StageContext:
    """Per-event facts a stage may use, and scores it may record on a pass."""

    identity: JobIdentity
    attempt: int
    started_at_ms: int
    scores: dict[str, float] = field(default_factory=dict)


class Stage(ABC, Generic[EventT, SettingsT]):
    """Reads ``EventT`` events; configured by ``SettingsT`` (the service's settings)."""

    name: ClassVar[str]
    input_type: ClassVar[type[Message]]
    # Fields of alive.settings.Topics: the topic this stage reads and the one it writes.
    consumes: ClassVar[str]
    emits: ClassVar[str]
    passed_state: ClassVar[JobState.ValueType]
    veto_state: ClassVar[JobState.ValueType] = JobState.VETOED
    veto_verdict: ClassVar[Verdict.ValueType] = Verdict.VETO

    def __init__(self, settings: SettingsT, blobs: BlobStore) -> None:
        self.settings = settings
        self.blobs = blobs

    @property
    def input_topic(self) -> str:
        return str(getattr(self.settings.topics, self.consumes))

    @property
    def output_topic(self) -> str:
        return str(getattr(self.settings.topics, self.emits))

    def identify(self, event: EventT) -> JobIdentity:
        """The job an event belongs to. Raises PermanentError for an event naming none."""
        if not isinstance(event, Job) or not event.job_id:
            raise PermanentError("EVENT_WITHOUT_JOB_ID", "the event names no job")
        return JobIdentity(event.job_id, event.request_id, event.creator_id)

    @abstractmethod
    async def process(self, event: EventT, ctx: StageContext) -> Job | Veto: ...

    async def start(self) -> None:
        """Connect to dependencies before the first event."""

    async def stop(self) -> None:
        """Release what start() took."""

    def is_ready(self) -> bool:
        return True
