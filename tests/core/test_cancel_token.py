"""Cancellation reaches the thread: work a stage hands to a thread stops at its next check of
the context's cancel token when its job is cancelled or the runner gives the event up (a
revoked partition, shutdown's grace over), instead of running on to the end unseen."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from alive.blobs import LocalBlobStore
from alive.pipeline import ACCEPTED, PHOTO_CLEARED, StageSpec
from alive.settings import StageSettings
from alive.stage import Cancelled, CancelToken, Stage, StageContext
from alive.v1.events_pb2 import Job, JobState
from alive_tools.testing import StageHarness

STEPS = ("tests.core", ACCEPTED, PHOTO_CLEARED, JobState.PHOTO_CLEARED, "test")
STEP_S = 0.02
TOTAL_STEPS = 500  # 10 s of work, if nothing stops it


class SlowSteps(Stage[Job, StageSettings]):
    """Hands TOTAL_STEPS short steps to a thread, checking its cancel token between them."""

    spec = StageSpec("steps", *STEPS)

    def __init__(self, settings: StageSettings, blobs: LocalBlobStore) -> None:
        super().__init__(settings, blobs)
        self.done = 0
        self.started = threading.Event()
        self.exited = threading.Event()  # the thread's work returned or raised
        self.finished = False

    async def process(self, event: Job, ctx: StageContext) -> Job:
        await asyncio.to_thread(self._work, ctx.cancel_token)
        return event

    def _work(self, token: CancelToken) -> None:
        try:
            for _ in range(TOTAL_STEPS):
                token.check()
                time.sleep(STEP_S)
                self.done += 1
                self.started.set()
            self.finished = True
        finally:
            self.exited.set()


@pytest.fixture
def harness(tmp_path: Path) -> StageHarness:
    return StageHarness(SlowSteps(StageSettings(cancel_check_s=0.02), LocalBlobStore(tmp_path)))


def stage_of(harness: StageHarness) -> SlowSteps:
    assert isinstance(harness.stage, SlowSteps)
    return harness.stage


async def test_a_job_cancelled_while_its_thread_works_stops_that_thread(
    harness: StageHarness,
) -> None:
    stage = stage_of(harness)
    job = Job(job_id="slow-1", prompt="hi")
    sending = asyncio.create_task(harness.send(job))
    assert await asyncio.to_thread(stage.started.wait, 10)
    harness.ledger.mark_cancelled(job.job_id)
    out = await asyncio.wait_for(sending, 5)
    assert stage.exited.is_set() and not stage.finished
    assert stage.done < TOTAL_STEPS // 2
    assert not (out.jobs or out.statuses or out.dead_letters)
    assert harness.metrics.events_out.labels("steps", "cancelled")._value.get() == 1
    assert harness.ledger.get("steps", job.job_id) is None


async def test_an_event_given_up_by_the_runner_stops_its_thread(harness: StageHarness) -> None:
    """What the runner does on a revoked partition (after its grace) or at shutdown: cancel
    the event's task. The thread stops too, and nothing is decided: the next owner
    processes the redelivered event."""
    stage = stage_of(harness)
    job = Job(job_id="slow-2", prompt="hi")
    sending = asyncio.create_task(harness.send(job))
    assert await asyncio.to_thread(stage.started.wait, 10)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert await asyncio.to_thread(stage.exited.wait, 2)
    assert not stage.finished and stage.done < TOTAL_STEPS // 2
    assert harness.ledger.get("steps", job.job_id) is None
    assert not harness.emitted.statuses


def test_a_token_raises_cancelled_once_set_from_any_thread() -> None:
    token = CancelToken()
    token.check()
    setter = threading.Thread(target=token.cancel, args=("cancelled by its creator",))
    setter.start()
    setter.join()
    assert token.is_cancelled()
    with pytest.raises(Cancelled, match="cancelled by its creator"):
        token.check()
