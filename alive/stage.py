"""What a pipeline stage is: the one class a service file implements.

A stage names its place in the pipeline (``spec``, a ``StageSpec`` from alive/pipeline.py:
what it reads and writes, the states it moves a job to) and, for each event it reads,
returns the job to send on (``Job``), a ``Veto`` with reason codes, or (a stage that may
wait for a person) a ``Hold``. It raises
``TransientError`` when a retry may help (a dependency is down) and ``PermanentError`` when
it cannot (the runner dead-letters the event and marks the job failed). Everything else
(consuming, producing, status events, the ledger, retries, metrics, traces, commits) is the
runner's job. alive_tools.testing.StageHarness runs a stage in process, without a broker.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Generic, TypeVar

from google.protobuf.message import Message

from alive.blobs import BlobStore
from alive.dependencies import Probe
from alive.pipeline import StageSpec
from alive.reasons import Finding, ReasonCode, ReasonError
from alive.settings import StageSettings
from alive.v1.events_pb2 import Job

EventT = TypeVar("EventT", bound=Message)
SettingsT = TypeVar("SettingsT", bound=StageSettings)


@dataclass(frozen=True)
class JobIdentity:
    job_id: str
    request_id: str = ""
    creator_id: str = ""


@dataclass(frozen=True)
class Veto:
    """A stage's "no": the job stops here, with one finding per reason
    (docs/reason-codes.md)."""

    findings: tuple[Finding, ...]
    scores: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, code: ReasonCode, detail: str, scores: Mapping[str, float] | None = None) -> Veto:
        return cls((Finding(code, detail),), scores or {})

    @property
    def reason_codes(self) -> tuple[ReasonCode, ...]:
        return tuple(f.code for f in self.findings)

    @property
    def detail(self) -> str:
        return "; ".join(f.detail for f in self.findings if f.detail)


@dataclass(frozen=True)
class Hold:
    """A job that waits for a person (a stage whose spec ``holds``): ``item`` goes to that
    topic, the job keeps its state, and the stage records no outcome, so the decision, when
    it comes back as a new event, is processed."""

    item: Message
    findings: tuple[Finding, ...]


class PermanentError(ReasonError):
    """Retrying will not help: the event is dead-lettered and the job fails."""


class TransientError(Exception):
    """A retry with backoff may help (e.g. Triton unavailable)."""


class Cancelled(Exception):
    """The job was cancelled while the stage worked on it: nothing is sent on (its
    CANCELLED status is already out)."""


class CancelToken:
    """Tells work handed to a thread to stop. The runner sets it when the job is cancelled
    (its cancel mark, checked every ``cancel_check_s`` while the stage works) or when it gives
    the event up (its partition revoked, or shutdown's grace over: the event is redelivered).
    A thread cannot be interrupted, so long thread work calls ``check()`` between its steps
    or frames, and stops there."""

    def __init__(self) -> None:
        self._set = threading.Event()
        self._why = ""

    def cancel(self, why: str) -> None:
        self._why = why
        self._set.set()

    def is_cancelled(self) -> bool:
        return self._set.is_set()

    def check(self) -> None:
        """Raises Cancelled once the token is set (safe to call from any thread)."""
        if self._set.is_set():
            raise Cancelled(self._why)


@dataclass
class StageContext:
    """Per-event facts a stage may use; the scores it records on a pass, and the findings
    for which a passed job must be looked at by a person before it is published.
    ``cancelled`` tells whether the job's creator has cancelled it since (it reads the
    store: call it off the event loop, and not in a tight loop); a stage doing long work
    checks it and raises ``Cancelled``. ``cancel_token`` does the same without reading the
    store, and also when the runner gives the event up: long work in a thread calls its
    ``check()`` between steps. ``report_progress(done, total, unit)`` tells the
    job's watchers how far a long piece of work is (the runner limits how often it sends;
    a report that cannot be sent is dropped, never an error)."""

    identity: JobIdentity
    attempt: int
    started_at_ms: int
    scores: dict[str, float] = field(default_factory=dict)
    review: list[Finding] = field(default_factory=list)
    cancelled: Callable[[], bool] = lambda: False
    cancel_token: CancelToken = field(default_factory=CancelToken)
    report_progress: Callable[[int, int, str], Awaitable[None]] = field(
        default=lambda done, total, unit: _nothing()
    )


async def _nothing() -> None:
    """What a progress report does where nobody listens."""


class Stage(ABC, Generic[EventT, SettingsT]):
    """Reads ``EventT`` events (the message of ``spec.consumes``); configured by
    ``SettingsT``, the stage's own settings."""

    spec: ClassVar[StageSpec]

    def __init__(self, settings: SettingsT, blobs: BlobStore) -> None:
        self.settings = settings
        self.blobs = blobs

    @classmethod
    def input_type(cls) -> type[Message]:
        message = cls.spec.consumes.message
        assert message is not None, "a stage reads a topic with a message type"
        return message

    def identify(self, event: EventT) -> JobIdentity:
        """The job an event belongs to. Raises PermanentError for an event naming none."""
        if not isinstance(event, Job) or not event.job_id:
            raise PermanentError(ReasonCode.EVENT_WITHOUT_JOB_ID, "the event names no job")
        return JobIdentity(event.job_id, event.request_id, event.creator_id)

    def attested_job(self, event: EventT) -> Job | None:
        """The job whose attestations the stage's ``spec.requires`` are checked on before it
        acts: the event itself for a stage that reads jobs."""
        return event if isinstance(event, Job) else None

    def versions(self) -> Mapping[str, str]:
        """The policy and model versions this stage's decisions are made under; they go
        into its attestations."""
        return {}

    @abstractmethod
    async def process(self, event: EventT, ctx: StageContext) -> Job | Veto | Hold: ...

    def output(self, job: Job) -> Message:
        """What goes to ``spec.emits`` for a passed job, once attested: the job itself,
        unless the topic carries something else (alive.published: no prompt)."""
        return job

    async def start(self) -> None:
        """Connect to dependencies before the first event."""

    async def stop(self) -> None:
        """Release what start() took."""

    def is_ready(self) -> bool:
        return True

    def probes(self) -> Mapping[str, Probe]:
        """The stage's own dependencies beyond the broker and the blob store, by name (the
        generator's Triton model): the service probes them every few seconds, and its
        readiness and ``alive_dependency_up`` follow (alive/dependencies.py)."""
        return {}
