"""The ``alive`` command's edges, without a stack: version, exit codes, clear errors."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from alive.settings import ServiceSettings
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


def test_help_is_plain_text_and_every_argument_is_explained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser_help = []
    commands = ([], ["run"], ["submit"], ["status"], ["cancel"], ["token"], ["env"], ["verify"])
    for command in (*commands, ["dev-chain"]):
        with pytest.raises(SystemExit):
            cli.main([*command, "--help"])
        parser_help.append(capsys.readouterr().out)
    text = "\n".join(parser_help)
    assert "``" not in text and ":func:" not in text
    assert _arguments_without_help(text) == []


def _arguments_without_help(help_text: str) -> list[str]:
    """Argument lines of argparse's help with no text after them: argparse writes
    ``  --name NAME  what it is``, or the text on the next, deeper-indented line."""
    lines = help_text.splitlines()
    bare = []
    for i, line in enumerate(lines):
        if not line.startswith("  ") or line.startswith("   ") or "  " in line.strip():
            continue  # not an argument line, or one with its help beside it
        following = lines[i + 1] if i + 1 < len(lines) else ""
        indent = len(following) - len(following.lstrip())
        if not (following.strip() and indent > 4):
            bare.append(line.strip())
    return bare


def test_the_help_check_finds_an_argument_without_help() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--explained", help="it is")
    parser.add_argument("--bare-one", type=int)
    assert _arguments_without_help(parser.format_help()) == ["--bare-one BARE_ONE"]


def test_run_with_a_missing_photo_fails_before_starting_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as done:
        cli.main(["run", "--photo", str(tmp_path / "missing.jpg")])
    assert done.value.code == cli.NO_PHOTO
    assert not (tmp_path / ".alive").exists()  # no stack was started
    assert "cannot read the photo" in capsys.readouterr().err


def test_env_prints_the_running_stacks_addresses_as_exports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    state = {
        "api": "127.0.0.1:5001",
        "api_tls_ca": str(tmp_path / "keys dir" / "api-ca.pem"),
        "kafka": "127.0.0.1:5002",
        "triton_grpc": "127.0.0.1:5003",
        "triton_metrics": "http://127.0.0.1:5004/metrics",
        "blob_url": str(tmp_path / "blobs"),
        "blob_keyring": str(tmp_path / "keys dir" / "blob-keyring.json"),
        "trust_anchor": str(tmp_path / "root.pem"),
    }
    (tmp_path / ".alive").mkdir()
    (tmp_path / ".alive" / "stack.json").write_text(json.dumps(state))
    with pytest.raises(SystemExit) as done:
        cli.main(["env"])
    assert done.value.code == 0
    exports = capsys.readouterr().out
    # what a shell gets from `eval "$(alive env)"`
    env = subprocess.run(
        ["bash", "-c", exports + "\nenv"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "ALIVE_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:5002" in env
    assert f"ALIVE_API_TLS_CA={state['api_tls_ca']}" in env  # a space survives quoting
    assert f"ALIVE_BLOB_URL={state['blob_url']}" in env
    assert f"ALIVE_BLOB_KEYRING_PATH={state['blob_keyring']}" in env
    # the settings a service beside the stack reads, pointing at it
    monkeypatch.setenv("ALIVE_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:5002")
    assert ServiceSettings().kafka.bootstrap_servers == "127.0.0.1:5002"
    with pytest.raises(SystemExit):
        cli.main(["env", "--json"])
    assert json.loads(capsys.readouterr().out) == state


def test_a_log_gets_each_step_as_a_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "console", Console(stderr=True, force_terminal=False))
    with cli._working("starting the broker…"):
        pass
    assert capsys.readouterr().err == "starting the broker…\n"


def test_demo_writes_a_contact_sheet_per_photo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from alive_tools.contact_sheets import LABEL_HEIGHT

    photo = tmp_path / "photo.png"
    Image.new("RGB", (96, 64), (90, 140, 200)).save(photo)
    args = ["demo", "--photo", str(photo), "--prompt", "snow", "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as done:
        cli.main(args)
    sheet = tmp_path / "out" / "contact-photo.png"
    assert done.value.code == 0 and capsys.readouterr().out.strip() == str(sheet)
    # One row (one prompt) of six 9:16 thumbnails 144 pixels wide, under its label.
    assert Image.open(sheet).size == (6 * 144, 256 + LABEL_HEIGHT)
