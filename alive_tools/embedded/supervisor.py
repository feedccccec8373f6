"""Keeps the embedded stack's processes running, as Kubernetes keeps a pod's containers: a
process that exits when nobody stopped it is started again, after a delay that doubles with
each restart in a row (``BACKOFF_FIRST_S`` up to ``BACKOFF_MAX_S``, like a CrashLoopBackOff)
and falls back once the process has run ``STABLE_S``.

Each exit and restart is a line in ``<workdir>/logs/supervisor.log`` and counts in the
stack's state (``restarts``). A process stopped on purpose (the stack stopping, a test
holding a service down) is left alone.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0  # a process that ran this long starts its next backoff from the first step
POLL_S = 0.25


class ChildProcess:
    """What the supervisor asks of a process a component starts itself (``_proc``; None
    while stopped on purpose)."""

    _proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def wanted(self) -> bool:
        """Started and not stopped on purpose (it may have died)."""
        return self._proc is not None

    def exit_code(self) -> int | None:
        return self._proc.poll() if self._proc else None


@dataclass
class Supervised:
    """One process the supervisor tends, as callables onto whatever runs it."""

    name: str
    running: Callable[[], bool]  # the process is alive
    wanted: Callable[[], bool]  # it should be (False: stopped on purpose)
    start: Callable[[], None]  # starts it again; raises if it cannot
    exit_code: Callable[[], int | None] = lambda: None
    restarts: int = 0
    failures_in_a_row: int = 0
    started_at: float = 0.0
    down_since: float | None = None
    restart_at: float = 0.0


def backoff_s(failures_in_a_row: int) -> float:
    """The wait before the restart that follows ``failures_in_a_row`` exits in a row."""
    return float(min(BACKOFF_FIRST_S * 2 ** max(failures_in_a_row - 1, 0), BACKOFF_MAX_S))


class Supervisor:
    def __init__(self, log_path: Path, on_restart: Callable[[], None] = lambda: None) -> None:
        self.log_path = log_path
        self._on_restart = on_restart
        self._processes: dict[str, Supervised] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, process: Supervised) -> None:
        process.started_at = time.monotonic()
        self._processes[process.name] = process

    def restarts(self) -> dict[str, int]:
        return {name: p.restarts for name, p in self._processes.items()}

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="stack-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops tending (before the stack stops its processes); waits for a restart under
        way to finish."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(POLL_S):
            for process in list(self._processes.values()):
                if self._stopping.is_set():
                    return
                self._tend(process, time.monotonic())

    def _tend(self, process: Supervised, now: float) -> None:
        if not process.wanted() or process.running():
            if process.down_since is None and now - process.started_at >= STABLE_S:
                process.failures_in_a_row = 0
            process.down_since = None
            return
        if process.down_since is None:
            process.down_since = now
            process.failures_in_a_row += 1
            wait = backoff_s(process.failures_in_a_row)
            process.restart_at = now + wait
            self._log(
                f"{process.name} exited (code {process.exit_code()}); "
                f"restarting in {wait:g} s (exit {process.failures_in_a_row} in a row)"
            )
        if now < process.restart_at:
            return
        try:
            process.start()
        except Exception as exc:  # counts as one more exit in a row: wait longer
            process.failures_in_a_row += 1
            wait = backoff_s(process.failures_in_a_row)
            process.restart_at = time.monotonic() + wait
            self._log(f"{process.name} did not start ({exc}); trying again in {wait:g} s")
            return
        process.restarts += 1
        process.started_at = time.monotonic()
        process.down_since = None
        self._log(f"{process.name} restarted (restart {process.restarts})")
        self._on_restart()

    def _log(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"{stamp} {line}\n")
