"""Private scratch folders for a job's media while a step works on it, and the sweep that
removes the ones a killed process left behind.

``with scratch_folder(kind)`` removes its folder on the way out, but a process killed with
SIGKILL (the OOM killer, a drain's deadline) never gets there, and a decrypted photo or
video would stay in the temporary folder for as long as the host lives. Every scratch
folder is named with its process's id; a service at start removes each one whose process
is gone (``sweep_orphaned``). This assumes the processes sharing a temporary folder share a
process-id namespace too: true of one host, and of a pod, whose /tmp is its own.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_PREFIX = "alive-scratch-"
# alive-scratch-<kind>-<pid>-<random>, as tempfile names it.
_NAME = re.compile(rf"^{_PREFIX}[a-z]+-(\d+)-")


def scratch_folder(kind: str) -> tempfile.TemporaryDirectory[str]:
    """A new private folder (mode 0700) in the temporary folder, removed after the ``with``;
    ``kind`` (lower-case letters) says what it holds."""
    if not kind.isalpha() or not kind.islower():
        raise ValueError(f"scratch kind {kind!r}: lower-case letters only")
    return tempfile.TemporaryDirectory(prefix=f"{_PREFIX}{kind}-{os.getpid()}-")


def sweep_orphaned(root: Path | None = None) -> int:
    """Removes the scratch folders in ``root`` (the temporary folder) whose process is gone
    and that this user owns; returns how many."""
    removed = 0
    for entry in Path(root or tempfile.gettempdir()).iterdir():
        match = _NAME.match(entry.name)
        if match is None or _process_exists(int(match.group(1))):
            continue
        try:
            if entry.is_symlink() or not entry.is_dir() or entry.stat().st_uid != os.getuid():
                continue
        except FileNotFoundError:
            continue  # removed meanwhile
        shutil.rmtree(entry, ignore_errors=True)
        removed += 1
    return removed


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        return True
    return True
