"""Ingest's status view, fed in process: one view per job, and the count of jobs under way
that the API's caps read."""

from __future__ import annotations

from alive.settings import ServiceSettings
from alive.v1.events_pb2 import JobState, StatusEvent
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
