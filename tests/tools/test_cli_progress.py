"""The CLI's progress on the real embedded stack: a log (CI) gets one plain line per
transition as it happens; a terminal's progress bar names the stage at work, not the one
that just finished."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from alive.pipeline import PIPELINE
from alive.v1.events_pb2 import JobState
from alive_tools import cli
from alive_tools.client import AliveClient
from tests.support import SMALL_OUTPUT

TO_READY = ["SUBMITTED", "ACCEPTED", "PHOTO_CLEARED", "PROMPT_CLEARED", "GENERATED", "SCORED",
            "SIGNED", "READY"]  # fmt: skip


def test_a_log_gets_one_line_per_transition(
    client: AliveClient, small_photo: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=log, force_terminal=False, width=200))
    job_id = client.submit(small_photo, "clouds drifting", output=SMALL_OUTPUT).job_id
    view = cli._follow(client, job_id, stop_at_ready=True)
    assert view.state == JobState.READY
    lines = log.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == TO_READY  # "  0.1 s  ACCEPTED  (ingest)"
    assert all(line.split()[1] == "s" for line in lines)
    assert "(generator)" in lines[TO_READY.index("GENERATED")]


def test_a_terminal_names_the_stage_at_work(
    client: AliveClient, small_photo: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)
    monkeypatch.setattr(cli, "console", terminal)
    job_id = client.submit(small_photo, "leaves falling", output=SMALL_OUTPUT).job_id
    view = cli._follow(client, job_id, stop_at_ready=True)
    assert view.state == JobState.READY
    shown = screen.getvalue()
    # While the job is PROMPT_CLEARED the generator works on it: the bar names it, not the
    # state, and every stage at work is drawn as its transition arrives, however quick the
    # step (the generator's progress reports then follow).
    before_ready = cli.STEPS_TO_READY[:-1]
    working = [stage.name for state in before_ready if (stage := PIPELINE.next_stage(state))]
    assert len(working) == len(before_ready)
    for name in working:
        assert f"{name}…" in shown, name
    assert "prompt_cleared" not in shown
