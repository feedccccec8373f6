"""Scratch folders: removed after use, and the ones a killed process left are swept."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alive.scratch import scratch_folder, sweep_orphaned

HOLDER = """
import sys, time
from alive.scratch import scratch_folder
scratch = scratch_folder("blob")
open(scratch.name + "/photo.jpg", "wb").write(b"plaintext")
print(scratch.name, flush=True)
time.sleep(600)
"""


def _holding_process(tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER], env=env, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    return holder, Path(holder.stdout.readline().strip())


def test_a_folder_is_private_and_removed_after_use(tmp_path: Path) -> None:
    with scratch_folder("seal") as name:
        folder = Path(name)
        assert folder.name.startswith(f"alive-scratch-seal-{os.getpid()}-")
        assert folder.stat().st_mode & 0o777 == 0o700
    assert not folder.exists()
    with pytest.raises(ValueError):
        scratch_folder("../x")


def test_the_sweep_removes_what_a_killed_process_left_and_nothing_of_a_live_one(
    tmp_path: Path,
) -> None:
    killed, left = _holding_process(tmp_path)
    living, kept = _holding_process(tmp_path)
    unrelated = tmp_path / "alive-scratch-notes"  # not a scratch folder's name
    unrelated.mkdir()
    try:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        assert (left / "photo.jpg").exists()  # SIGKILL runs no clean-up
        assert sweep_orphaned(tmp_path) == 1
        assert not left.exists()
        assert (kept / "photo.jpg").exists() and unrelated.exists()
        assert sweep_orphaned(tmp_path) == 0
    finally:
        living.kill()
        living.wait()
