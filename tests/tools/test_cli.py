"""The ``alive`` command's edges, without a stack: version, exit codes, clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

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
