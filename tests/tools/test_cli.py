"""The ``alive`` command's edges, without a stack: version, exit codes, clear errors."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest

from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, Progress, StatusEvent
from alive_tools import cli
from alive_tools.client import AliveClient


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("alive ")


def test_no_stack_and_usage_errors_have_their_own_exit_codes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .alive/stack.json here
    with pytest.raises(SystemExit) as no_stack:
        cli.main(["status", "some-job"])
    assert no_stack.value.code == cli.NO_STACK
    with pytest.raises(SystemExit) as usage:
        cli.main(["status"])
    assert usage.value.code == 2


def test_a_missing_photo_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(
        photo=tmp_path / "missing.jpg", prompt="", width=0, height=0, fps=0, duration_ms=0,
        seed=None, out=tmp_path,
    )  # fmt: skip
    with AliveClient("127.0.0.1:1", token=None, tls_ca=None) as client:  # never reached
        code = cli._submit_and_show(client, args, None, tmp_path, publish=False)  # type: ignore[arg-type]
    assert code == cli.NO_PHOTO
    error = capsys.readouterr().err
    assert "cannot read the photo" in error and "Traceback" not in error


class _Replay:
    """What the API's Watch and Get answered for one job, replayed to the CLI."""

    def __init__(self, events: list[StatusEvent]) -> None:
        self.events = events

    def watch(self, job_id: str, *, stop_at_ready: bool) -> Iterator[StatusEvent]:
        yield from self.events

    def get(self, job_id: str) -> JobView:
        return JobView(job_id=job_id, state=self.events[-1].state)


def test_a_log_gets_a_line_per_transition_and_per_generation_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    steps = Progress(done=12, total=30, unit="steps")
    replay = _Replay(
        [
            StatusEvent(state=JobState.SUBMITTED, stage="api"),
            StatusEvent(state=JobState.PROMPT_CLEARED, stage="moderation-prompt"),
            StatusEvent(stage="generator", progress=steps),
            StatusEvent(state=JobState.GENERATED, stage="generator"),
        ]
    )
    view = cli._follow(replay, "j1", stop_at_ready=True, shown=1)  # type: ignore[arg-type]
    assert view.state == JobState.GENERATED
    lines = [line.split("s  ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert lines == [
        "PROMPT_CLEARED  (moderation-prompt)",
        "generator 12/30 steps",
        "GENERATED  (generator)",
    ]
