"""Ingest's status view and the fold of status events into a job's state, in process: one
view per job, the count of jobs under way that the API's caps read, a cache that stays
bounded, and erasure."""

from __future__ import annotations

import pytest

from alive.settings import ServiceSettings
from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, Progress, StatusEvent
from services.ingest.job_states import fold
from services.ingest.settings import IngestSettings
from services.ingest.status_view import JobGone, JobIdFilter, StatusView


def event(job_id: str, creator: str, state: JobState.ValueType, stage: str) -> StatusEvent:
    return StatusEvent(job_id=job_id, creator_id=creator, state=state, stage=stage)


def new_view(**own: int) -> StatusView:
    return StatusView(ServiceSettings(), IngestSettings(**own))  # type: ignore[arg-type]


async def test_jobs_under_way_are_counted_per_creator_until_ready_or_ended() -> None:
    view = new_view()
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
    got = await view.get("b")
    assert got is not None and got.terminal and got.state == JobState.VETOED


def test_a_fold_drops_repeats_and_late_progress_and_keeps_a_terminal_state() -> None:
    submitted = fold(None, event("a", "c1", JobState.SUBMITTED, "api"))
    assert submitted is not None and submitted.creator_id == "c1"
    assert fold(submitted, event("a", "c1", JobState.SUBMITTED, "api")) is None
    cancelled = fold(submitted, event("a", "c1", JobState.CANCELLED, "api"))
    assert cancelled is not None and cancelled.terminal
    late = fold(cancelled, event("a", "c1", JobState.ACCEPTED, "ingest"))
    assert late is not None  # the transition is recorded; the state stays
    assert (late.state, [h.state for h in late.history][-1]) == (
        JobState.CANCELLED,
        JobState.ACCEPTED,
    )
    assert fold(late, progress("a", "generator", 1, 30)) is None  # terminal: no progress
    assert submitted.state == JobState.SUBMITTED and len(submitted.history) == 1  # unchanged


def test_a_status_arriving_late_is_recorded_but_moves_no_state_back() -> None:
    """A stage sends its status and its output side by side: the next stage's status can
    reach alive.status first."""
    view = fold(None, event("a", "c1", JobState.SUBMITTED, "api"))
    for state, stage in ((JobState.SCORED, "audio"), (JobState.READY, "moderation-video")):
        view = fold(view, event("a", "c1", state, stage))
    assert view is not None
    view.video.uri = "ready"
    late = event("a", "c1", JobState.SIGNED, "provenance")
    late.video.uri = "signed"
    got = fold(view, late)
    assert got is not None and (got.state, got.video.uri) == (JobState.READY, "ready")
    assert [h.state for h in got.history][-2:] == [JobState.READY, JobState.SIGNED]
    published = fold(got, event("a", "c1", JobState.PUBLISHED, "review"))
    assert published is not None and published.state == JobState.PUBLISHED


def progress(job_id: str, stage: str, done: int, total: int) -> StatusEvent:
    return StatusEvent(
        job_id=job_id, stage=stage, progress=Progress(done=done, total=total, unit="steps")
    )


async def test_progress_goes_to_watchers_and_the_view_but_not_into_the_history() -> None:
    view = new_view()
    view.apply(event("a", "c1", JobState.PROMPT_CLEARED, "moderation-prompt"))
    watched = view.watch("a")
    assert (await anext(watched)).state == JobState.PROMPT_CLEARED
    view.apply(progress("a", "generator", 4, 30))
    report = await anext(watched)
    assert (report.progress.done, report.stage) == (4, "generator")
    job = await view.get("a")
    assert job is not None
    assert (job.progress.done, job.progress.total, len(job.history)) == (4, 30, 1)
    assert job.state == JobState.PROMPT_CLEARED  # a report is not a transition
    view.apply(event("a", "c1", JobState.GENERATED, "generator"))
    assert (await anext(watched)).state == JobState.GENERATED
    view.apply(progress("a", "generator", 5, 30))  # late, from a stage already passed
    job = await view.get("a")
    assert job is not None and not job.HasField("progress")
    assert [h.state for h in job.history] == [JobState.PROMPT_CLEARED, JobState.GENERATED]
    await watched.aclose()


def state(job_id: str, creator: str, *states: JobState.ValueType) -> JobView:
    view: JobView | None = None
    for s in states:
        view = fold(view, event(job_id, creator, s, JobState.Name(s).lower()))
    assert view is not None
    return view


async def test_the_cache_stays_bounded_under_many_jobs_and_the_counts_stay_whole() -> None:
    view = new_view(job_cache_size=50)
    for i in range(5000):
        settled = i % 2 == 0
        states = (JobState.SUBMITTED, JobState.READY) if settled else (JobState.SUBMITTED,)
        view.apply_state(state(f"job-{i}", f"c{i % 7}", *states), offset=i)
    assert view.cached_jobs == 50
    assert view.in_flight() == 2500  # the jobs under way are counted, evicted or not
    assert sum(view.in_flight(f"c{c}") for c in range(7)) == 2500
    assert await view.get("job-4999") is not None
    # Not started, so no lookup: an evicted job is not served from memory.
    assert await view.get("job-0") is None
    assert view.may_exist("job-0") and not view.may_exist("job-never")


async def test_an_older_record_does_not_replace_a_newer_one_and_pending_events_survive() -> None:
    view = new_view()
    view.apply_state(state("a", "c1", JobState.SUBMITTED, JobState.ACCEPTED), offset=10)
    view.apply_state(state("a", "c1", JobState.SUBMITTED), offset=4)  # a refold, read late
    got = await view.get("a")
    assert got is not None and got.state == JobState.ACCEPTED
    view.apply(event("a", "c1", JobState.CANCELLED, "api"))  # Cancel, before its record
    view.apply_state(
        state("a", "c1", JobState.SUBMITTED, JobState.ACCEPTED, JobState.GENERATED), 12
    )
    got = await view.get("a")
    assert got is not None and got.state == JobState.CANCELLED  # still pending: kept
    assert JobState.GENERATED in [h.state for h in got.history]


async def test_a_tombstone_forgets_the_job_and_ends_its_watchers() -> None:
    view = new_view()
    view.apply_state(state("a", "c1", JobState.SUBMITTED), offset=1)
    erased: list[str] = []
    view.on_erased.append(erased.append)
    watched = view.watch("a")
    assert (await anext(watched)).state == JobState.SUBMITTED
    view.erase("a")
    with pytest.raises(JobGone):
        await anext(watched)
    assert await view.get("a") is None and view.in_flight() == 0 and erased == ["a"]


def test_the_job_filter_never_forgets_a_job_and_rarely_imagines_one() -> None:
    ids = JobIdFilter(10_000)
    for i in range(10_000):
        ids.add(f"{i:032x}")
    assert all(ids.may_exist(f"{i:032x}") for i in range(10_000))
    imagined = sum(ids.may_exist(f"other-{i}") for i in range(10_000))
    assert imagined < 300  # about 1% when full; 3% would be a broken filter
