"""Peak memory of process trees, sampled from /proc (Linux): the sum of the resident memory
of every process under the given roots (Triton's python-backend stubs, the pool's workers),
taken every ``interval_s`` while a measurement runs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _children() -> dict[int, list[int]]:
    """Every live process's children, by parent pid."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def tree_rss_bytes(roots: Iterable[int], include_roots: bool = True) -> int:
    """Resident memory of the processes under ``roots`` (and of the roots themselves)."""
    children = _children()
    pending = list(roots)
    seen: set[int] = set()
    total = 0
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        pending.extend(children.get(pid, ()))
        if not include_roots and pid in roots:
            continue
        try:
            resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident_pages * PAGE_BYTES
    return total


class PeakMemory:
    """Samples ``measure()`` on a thread until stopped; ``peak_bytes`` is the largest."""

    def __init__(self, measure: Callable[[], int], interval_s: float = 0.5) -> None:
        self._measure = measure
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_bytes = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._measure())
            self._stop.wait(self._interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_gib(self) -> float:
        return round(self.peak_bytes / 2**30, 2)
