"""The pipeline, declared once: its topics, its stages in order, and what each stage does to
a job.

Everything that knows the topology derives it from here: each stage class (its input type,
topics, states, consumer group), the runner, topic creation, the embedded stack (which
services to start, in which order, with which settings), the CLI's progress, the review's
checkpoint list, provenance's moderation summary, the topic map in docs/topics.md and the
Deployments in deploy/k8s (tests fail when either disagrees). Services refer to their stage
by the constant below (``stage = MODERATION_PHOTO``), so a typo is a mypy error, not a
runtime one.

Adding a stage: declare its topic and ``StageSpec`` here and list it in ``PIPELINE``, then
write the service (a ``Stage`` subclass, its settings and ``__main__``) and its Deployment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import (
    ImagePromptRequest,
    Job,
    JobState,
    PublishedVideo,
    PublishRequest,
    ReviewDecision,
    ReviewItem,
    StatusEvent,
    Unpublished,
    UserReport,
    Verdict,
    VetoEvent,
)

MessageT = TypeVar("MessageT", bound=Message)


@dataclass(frozen=True)
class Topic(Generic[MessageT]):
    """A Kafka topic and the protobuf message it carries.

    ``key`` names it in settings: ``ALIVE_TOPICS__<KEY>`` renames it (``default_name``
    otherwise). A topic whose ``message`` is None carries other topics' records as they were
    (the dead-letter topic). Stages write and read the topics their ``StageSpec`` names;
    ``also_written_by`` and ``also_read_by`` name anyone else (for docs/topics.md).

    The topic's own configs are declared here and nowhere else; ``alive topics`` and the
    KafkaTopics in deploy/k8s apply them, with the cluster-wide ones (replication factor,
    min.insync.replicas, the default partition count, the retention of topics that carry
    prompts) from settings (``alive.kafka.desired_topics``).
    """

    key: str
    default_name: str
    message: type[MessageT] | None
    purpose: str
    also_written_by: str = ""
    also_read_by: str = ""
    # A week covers a weekend outage of a consumer; the status view needs no more (a job
    # ends in minutes).
    retention_days: int = 7
    cleanup_policy: str = "delete"  # jobs are keyed, but every event counts: never compact
    # Records hold a creator's prompt (personal data): their retention is the setting
    # ALIVE_KAFKA__PROMPT_RETENTION_DAYS, kept short, whatever ``retention_days`` says.
    carries_prompt: bool = False
    # None: the cluster's default count (settings). Set only where a topic needs its own.
    partitions: int | None = None

    @property
    def compacted(self) -> bool:
        return "compact" in self.cleanup_policy

    @property
    def configs(self) -> dict[str, str]:
        """The topic's own Kafka configs (retention as declared; none under plain
        compaction, where Kafka deletes nothing by age)."""
        configs = {"cleanup.policy": self.cleanup_policy}
        if self.cleanup_policy != "compact":
            configs["retention.ms"] = str(self.retention_days * 24 * 3600 * 1000)
        if self.compacted:
            # The active segment is never compacted: roll it hourly (the default is a week),
            # so a reader of the topic reads about one record per key.
            configs["segment.ms"] = str(3600 * 1000)
        return configs


REQUESTS = Topic(
    "requests",
    "alive.requests",
    ImagePromptRequest,
    "submissions",
    also_written_by="the gRPC API's Submit (ingest service); other services",
    carries_prompt=True,
)
ACCEPTED = Topic(
    "accepted", "alive.accepted", Job, "validated jobs, photo stored", carries_prompt=True
)
PHOTO_CLEARED = Topic(
    "photo_cleared", "alive.photo-cleared", Job, "jobs whose photo passed", carries_prompt=True
)
PROMPT_CLEARED = Topic(
    "prompt_cleared", "alive.prompt-cleared", Job, "jobs whose prompt passed", carries_prompt=True
)
GENERATED = Topic("generated", "alive.generated", Job, "silent videos", carries_prompt=True)
SCORED = Topic("scored", "alive.scored", Job, "videos with a soundtrack", carries_prompt=True)
SIGNED = Topic("signed", "alive.signed", Job, "labelled, C2PA-signed videos", carries_prompt=True)
READY = Topic(
    "ready",
    "alive.ready",
    Job,
    "videos shown to the creator",
    also_read_by="downstream services",
    carries_prompt=True,
)
PUBLISH_REQUESTS = Topic(
    "publish_requests",
    "alive.publish-requests",
    PublishRequest,
    "requests to go on a Story",
    also_written_by="the gRPC API's Publish (ingest service); other services",
)
PUBLISHED = Topic(
    "published",
    "alive.published",
    PublishedVideo,
    "videos live on a Story: blob, AI label, provenance (no prompt)",
    also_written_by="the review web app (a reported video a reviewer approved after a takedown)",
    also_read_by="Story services; the review web app (what is live)",
)
REVIEW_QUEUE = Topic(
    "review_queue",
    "alive.review-queue",
    ReviewItem,
    "jobs waiting for a person (marked, sampled or reported)",
    also_written_by="the review web app (reported videos); ingest's Erase (tombstones)",
    also_read_by="the review web app (rebuilds its queue from it)",
    # The queue is rebuilt from this topic: an item must outlive the longest wait for a
    # reviewer (the queue-age alert fires long before).
    retention_days=30,
)
REVIEW_DECISIONS = Topic(
    "review_decisions",
    "alive.review-decisions",
    ReviewDecision,
    "every reviewer decision: who, when, what, why (audit log)",
    also_written_by="the review web app",
    also_read_by="the review web app (rebuilds its queue from it); auditors",
    retention_days=365,  # the audit log of reviewers' decisions: kept a year
)
REPORTS = Topic(
    "reports",
    "alive.reports",
    UserReport,
    "users' reports of published videos",
    also_written_by="the gRPC API's Report (ingest service); other services",
    also_read_by="the review web app (thresholds, severe reports)",
)
UNPUBLISHED = Topic(
    "unpublished",
    "alive.unpublished",
    Unpublished,
    "videos taken off Stories (severe reports, rejected on review, erased)",
    also_written_by="the review web app; ingest's Erase",
    also_read_by="Story services",
)
# Written by the runner for every stage, whatever the stage.
STATUS = Topic(
    "status",
    "alive.status",
    StatusEvent,
    "every transition of every job",
    also_written_by="every stage; the gRPC API's Submit (the SUBMITTED event) and Cancel",
    also_read_by="ingest's job-state folder (`alive-ingest-jobs`, writes alive.jobs); clients",
)
# Each job's latest state, folded from alive.status by ingest (services/ingest/job_states.py):
# what Get, Watch and Submit's idempotency read, long after the status events have expired.
JOBS = Topic(
    "jobs",
    "alive.jobs",
    JobView,
    "each job's latest state and its transitions (a JobView, keyed by job id; compacted)",
    also_written_by="ingest's job-state folder; erasure (a tombstone: null value, job id key)",
    also_read_by="ingest's status view (no group: it assigns every partition)",
    # One record per job is kept, however old: a job must outlive its status events.
    # Erasure removes one with a tombstone (a null value under its key).
    cleanup_policy="compact",
)
VETOES = Topic(
    "vetoes",
    "alive.vetoes",
    VetoEvent,
    "every veto and rejection, with reasons",
    also_written_by="every stage that says no: ingest (rejections), the checkpoints, review",
    retention_days=30,  # evidence for appeals and policy reviews
)
DLQ = Topic[Message](
    "dlq",
    "alive.dlq",
    None,
    "records a stage could not process, as they were, with why in headers",
    also_written_by="every stage",
    also_read_by="`alive dlq list|replay` (operators)",
    # Dead letters hold the original records, prompts included: the short retention of
    # prompts applies (time enough to find the cause and replay, docs/operations.md).
    carries_prompt=True,
)


class Subject(StrEnum):
    """What a stage's attestation vouches for: the part of the job it judged or made."""

    PHOTO = "photo"
    PROMPT = "prompt"
    VIDEO = "video"


@dataclass(frozen=True)
class StageSpec:
    """One stage of the pipeline: a service of its own, in its own consumer group.

    The stage reads ``consumes`` and, when the job passes, writes it to ``emits`` and moves
    the job to ``passed_state``. A stage that may say no moves the job to ``veto_state``
    with ``veto_verdict``; a ``checkpoint`` is one of the moderation checkpoints every job
    must pass before it is READY.

    A stage that ``attests`` signs, on each pass, what it judged or made (alive/attestation.py);
    before it acts it verifies the attestations of the stages it ``requires``, each over the
    job as it stands now (the same photo, prompt and video bytes).

    A stage that ``holds`` may leave a job waiting for a person: it writes an item to that
    topic, and the job stays in ``held_state`` until a decision comes back.

    A stage that ``reads_prompt`` gets the job with its prompt; after the last such stage
    the job travels without it (docs/privacy.md).
    """

    name: str
    module: str  # the service's runnable module: ``python -m <module>``
    consumes: Topic[Any]
    emits: Topic[Any]
    passed_state: JobState.ValueType
    summary: str
    checkpoint: bool = False
    veto_state: JobState.ValueType = JobState.VETOED
    veto_verdict: Verdict.ValueType = Verdict.VETO
    attests: Subject | None = None
    requires: tuple[str, ...] = ()
    holds: Topic[Any] | None = None
    held_state: JobState.ValueType = JobState.JOB_STATE_UNSPECIFIED
    reads_prompt: bool = False

    @property
    def consumer_group(self) -> str:
        return f"alive-{self.name}"

    @property
    def settings_prefix(self) -> str:
        """The environment prefix of the stage's own settings: ``ALIVE_<NAME>__``."""
        return f"ALIVE_{self.name.upper().replace('-', '_')}__"


INGEST = StageSpec(
    "ingest",
    "services.ingest",
    REQUESTS,
    ACCEPTED,
    JobState.ACCEPTED,
    "validate the photo and prompt, store the photo",
    veto_state=JobState.REJECTED,
    veto_verdict=Verdict.REJECT,
    attests=Subject.PHOTO,
)
MODERATION_PHOTO = StageSpec(
    "moderation-photo",
    "services.moderation.photo",
    ACCEPTED,
    PHOTO_CLEARED,
    JobState.PHOTO_CLEARED,
    "photo checkpoint",
    checkpoint=True,
    attests=Subject.PHOTO,
    requires=("ingest",),
)
MODERATION_PROMPT = StageSpec(
    "moderation-prompt",
    "services.moderation.prompt",
    PHOTO_CLEARED,
    PROMPT_CLEARED,
    JobState.PROMPT_CLEARED,
    "prompt checkpoint",
    checkpoint=True,
    attests=Subject.PROMPT,
    requires=("moderation-photo",),
    reads_prompt=True,
)
GENERATOR = StageSpec(
    "generator",
    "services.generator",
    PROMPT_CLEARED,
    GENERATED,
    JobState.GENERATED,
    "animate the photo on Triton, encode H.264",
    attests=Subject.VIDEO,
    requires=("moderation-photo", "moderation-prompt"),
    reads_prompt=True,
)
AUDIO = StageSpec(
    "audio",
    "services.audio",
    GENERATED,
    SCORED,
    JobState.SCORED,
    "add an ambient soundtrack",
    attests=Subject.VIDEO,
    requires=("generator",),
    reads_prompt=True,
)
PROVENANCE = StageSpec(
    "provenance",
    "services.provenance",
    SCORED,
    SIGNED,
    JobState.SIGNED,
    "label AI-generated, sign C2PA",
    attests=Subject.VIDEO,
    requires=("moderation-photo", "moderation-prompt", "audio"),
)
MODERATION_VIDEO = StageSpec(
    "moderation-video",
    "services.moderation.video",
    SIGNED,
    READY,
    JobState.READY,
    "video checkpoint: the creator sees it",
    checkpoint=True,
    attests=Subject.VIDEO,
    requires=("provenance",),
)
REVIEW = StageSpec(
    "review",
    "services.review",
    PUBLISH_REQUESTS,
    PUBLISHED,
    JobState.PUBLISHED,
    "pre-publish review: live on a Story",
    attests=Subject.VIDEO,
    requires=("moderation-photo", "moderation-prompt", "moderation-video", "provenance"),
    holds=REVIEW_QUEUE,
    held_state=JobState.READY,
)


class Pipeline:
    """Stages in the order a job meets them, and the topics they and the runner use."""

    def __init__(self, stages: Sequence[StageSpec], side_topics: Sequence[Topic[Any]]) -> None:
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        readers = [s.consumes.key for s in stages]
        if len(set(readers)) != len(readers):
            raise ValueError("two stages read one topic: each topic has one consuming stage")
        for i, spec in enumerate(stages):
            attesting_before = {s.name for s in stages[:i] if s.attests}
            unmet = sorted(set(spec.requires) - attesting_before)
            if unmet:
                raise ValueError(
                    f"{spec.name} requires attestations no earlier stage makes: {unmet}"
                )
        self.stages = tuple(stages)
        self.side_topics = tuple(side_topics)

    def __iter__(self) -> Iterator[StageSpec]:
        return iter(self.stages)

    def stage(self, name: str) -> StageSpec:
        for spec in self.stages:
            if spec.name == name:
                return spec
        raise KeyError(f"no stage {name!r} in the pipeline")

    @property
    def checkpoints(self) -> tuple[str, ...]:
        """The moderation checkpoints every job must pass before it is READY, in order."""
        return tuple(s.name for s in self.stages if s.checkpoint)

    def is_checkpoint(self, stage_name: str) -> bool:
        return stage_name in self.checkpoints

    def prompt_read_after(self, spec: StageSpec) -> bool:
        """Whether a stage downstream of ``spec``'s output reads the prompt (else the job
        goes on without it)."""
        seen: set[str] = set()
        consumer = self.consumer(spec.emits)
        while consumer is not None and consumer.name not in seen:
            if consumer.reads_prompt:
                return True
            seen.add(consumer.name)
            consumer = self.consumer(consumer.emits)
        return False

    def stage_reaching(self, state: JobState.ValueType) -> StageSpec:
        """The stage whose pass moves a job to ``state``."""
        for spec in self.stages:
            if spec.passed_state == state:
                return spec
        raise KeyError(f"no stage moves a job to {JobState.Name(state)}")

    def steps_to(self, state: JobState.ValueType) -> list[JobState.ValueType]:
        """The states a job passes on its way to ``state``, from SUBMITTED (progress bars)."""
        steps: list[JobState.ValueType] = [JobState.SUBMITTED]
        for spec in self.stages:
            steps.append(spec.passed_state)
            if spec.passed_state == state:
                return steps
        raise KeyError(f"no stage moves a job to {JobState.Name(state)}")

    def next_stage(self, state: JobState.ValueType) -> StageSpec | None:
        """The stage that works on a job once it is in ``state`` (None: no stage does)."""
        if state == JobState.SUBMITTED:
            return self.stages[0]
        reached = next((s for s in self.stages if s.passed_state == state), None)
        return self.consumer(reached.emits) if reached else None

    def topics(self) -> list[Topic[Any]]:
        """Every topic, each once: the stages' in pipeline order, then the side topics."""
        seen: dict[str, Topic[Any]] = {}
        for spec in self.stages:
            seen.setdefault(spec.consumes.key, spec.consumes)
            seen.setdefault(spec.emits.key, spec.emits)
            if spec.holds is not None:
                seen.setdefault(spec.holds.key, spec.holds)
        for topic in self.side_topics:
            seen.setdefault(topic.key, topic)
        return list(seen.values())

    def producers(self, topic: Topic[Any]) -> list[StageSpec]:
        return [s for s in self.stages if s.emits.key == topic.key]

    def consumer(self, topic: Topic[Any]) -> StageSpec | None:
        return next((s for s in self.stages if s.consumes.key == topic.key), None)


PIPELINE = Pipeline(
    [
        INGEST,
        MODERATION_PHOTO,
        MODERATION_PROMPT,
        GENERATOR,
        AUDIO,
        PROVENANCE,
        MODERATION_VIDEO,
        REVIEW,
    ],
    side_topics=[STATUS, JOBS, VETOES, DLQ, REVIEW_DECISIONS, REPORTS, UNPUBLISHED],
)
