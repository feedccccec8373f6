"""Ingest's status view, fed in process: one view per job, and the count of jobs under way
that the API's caps read."""

from __future__ import annotations

import uuid

from alive.kafka import ensure_topics, make_producer
from alive.pipeline import STATUS
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import JobState, Progress, StatusEvent
from alive_tools.embedded.broker import EmbeddedBroker
from services.ingest.status_view import StatusView


def event(job_id: str, creator: str, state: JobState.ValueType, stage: str) -> StatusEvent:
    return StatusEvent(job_id=job_id, creator_id=creator, state=state, stage=stage)


def test_jobs_under_way_are_counted_per_creator_until_ready_or_ended() -> None:
    view = StatusView(ServiceSettings())
    view.apply(event("a", "c1", JobState.SUBMITTED, "api"))
    view.apply(event("b", "c1", JobState.SUBMITTED, "api"))
    view.apply(event("c", "c2", JobState.SUBMITTED, "api"))
    assert (view.in_flight("c1"), view.in_flight("c2"), view.in_flight()) == (2, 1, 3)
    view.apply(event("a", "c1", JobState.ACCEPTED, "ingest"))
    view.apply(event("a", "c1", JobState.READY, "moderation-video"))
    view.apply(event("b", "c1", JobState.VETOED, "moderation-prompt"))
    assert (view.in_flight("c1"), view.in_flight()) == (0, 1)
    view.apply(event("a", "c1", JobState.PUBLISHED, "review"))  # after READY: still settled
    view.apply(event("c", "c2", JobState.ACCEPTED, "ingest"))  # redelivered? counted once
    view.apply(event("c", "c2", JobState.ACCEPTED, "ingest"))
    assert (view.in_flight("c1"), view.in_flight("c2")) == (0, 1)
    got = view.get("b")
    assert got is not None and got.terminal and got.state == JobState.VETOED


def progress(job_id: str, stage: str, done: int, total: int) -> StatusEvent:
    return StatusEvent(
        job_id=job_id, stage=stage, progress=Progress(done=done, total=total, unit="steps")
    )


async def test_progress_goes_to_watchers_and_the_view_but_not_into_the_history() -> None:
    view = StatusView(ServiceSettings())
    view.apply(event("a", "c1", JobState.PROMPT_CLEARED, "moderation-prompt"))
    watched = view.watch("a")
    assert (await anext(watched)).state == JobState.PROMPT_CLEARED
    view.apply(progress("a", "generator", 4, 30))
    assert (await anext(watched)).progress.done == 4
    job = view.get("a")
    assert job is not None
    assert (job.progress.done, job.progress.total, len(job.history)) == (4, 30, 1)
    assert job.state == JobState.PROMPT_CLEARED  # a report is not a transition
    view.apply(event("a", "c1", JobState.GENERATED, "generator"))
    view.apply(progress("a", "generator", 5, 30))  # late, from a stage already passed
    job = view.get("a")
    assert job is not None and not job.HasField("progress")
    assert [h.state for h in job.history] == [JobState.PROMPT_CLEARED, JobState.GENERATED]
    await watched.aclose()


def test_an_erased_job_is_forgotten_with_its_count() -> None:
    view = StatusView(ServiceSettings())
    view.apply(event("a", "c1", JobState.SUBMITTED, "api"))
    view.apply(event("b", "c1", JobState.SUBMITTED, "api"))
    view.forget("a")
    assert view.get("a") is None and view.in_flight("c1") == 1
    view.apply(event("a", "c1", JobState.ACCEPTED, "ingest"))  # late: sent before the erasure
    assert view.get("a") is None
    assert [v.job_id for v in view.jobs_of("c1")] == ["b"]


async def test_a_tombstone_on_the_topic_erases_the_job_when_the_view_reads_it(
    broker: EmbeddedBroker,
) -> None:
    run = uuid.uuid4().hex[:8]
    common = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        topics={STATUS.key: f"{run}.{STATUS.default_name}"},
    )
    await ensure_topics(common)
    producer = make_producer(common, "test")
    await producer.start()
    try:
        for job_id in ("kept", "erased"):
            submitted = event(job_id, "c1", JobState.SUBMITTED, "api")
            await producer.send_and_wait(
                common.topic(STATUS), submitted.SerializeToString(), key=job_id.encode()
            )
        await producer.send_and_wait(common.topic(STATUS), None, key=b"erased")
    finally:
        await producer.stop()
    view = StatusView(common)  # a restart: the whole topic read from the start
    await view.start()
    try:
        assert view.get("erased") is None and view.get("kept") is not None
        assert view.in_flight("c1") == 1
    finally:
        await view.stop()
