"""The embedded stack's supervisor on real processes: a process that dies is started again,
with a delay that doubles while it keeps dying; one stopped on purpose stays down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from alive_tools.embedded.supervisor import (
    BACKOFF_FIRST_S,
    BACKOFF_MAX_S,
    Supervised,
    Supervisor,
    backoff_s,
)


class Child:
    """A real process running ``code`` (python), started again on demand."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts: list[float] = []
        self.stopped_on_purpose = False

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", self.code])
        self.starts.append(time.monotonic())

    def supervised(self, name: str) -> Supervised:
        return Supervised(
            name,
            running=lambda: self.proc is not None and self.proc.poll() is None,
            wanted=lambda: not self.stopped_on_purpose,
            start=self.start,
            exit_code=lambda: self.proc.poll() if self.proc else None,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff_s(n) for n in (1, 2, 3)] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 2.0]
    assert backoff_s(50) == BACKOFF_MAX_S


def test_a_killed_process_is_restarted_and_the_restart_is_logged(tmp_path: Path) -> None:
    child = Child("import time; time.sleep(60)")
    child.start()
    log = tmp_path / "supervisor.log"
    restarted: list[int] = []
    supervisor = Supervisor(log, on_restart=lambda: restarted.append(1))
    supervisor.add(child.supervised("worker"))
    supervisor.start()
    try:
        first = child.proc
        assert first is not None
        first.send_signal(signal.SIGKILL)
        # The count goes up before the restart is logged and then reported: wait for the report.
        wait_until(lambda: supervisor.restarts()["worker"] == 1 and restarted == [1])
        assert child.proc is not first and child.proc is not None and child.proc.poll() is None
        assert restarted == [1]
        lines = log.read_text().splitlines()
        assert "worker exited (code -9); restarting in 0.5 s" in lines[0]
        assert "worker restarted (restart 1)" in lines[1]
    finally:
        supervisor.stop()
        child.stop()


def test_a_process_that_keeps_dying_waits_longer_each_time(tmp_path: Path) -> None:
    child = Child("raise SystemExit(3)")
    child.start()
    supervisor = Supervisor(tmp_path / "supervisor.log")
    supervisor.add(child.supervised("crasher"))
    supervisor.start()
    try:
        wait_until(lambda: len(child.starts) >= 4, timeout_s=15)
    finally:
        supervisor.stop()
    gaps = [b - a for a, b in zip(child.starts, child.starts[1:], strict=False)]
    # 0.5 s, 1 s, 2 s (plus the time to notice): each wait about twice the one before.
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0 and gaps[2] >= 2.0, gaps
    assert "crasher exited (code 3)" in (tmp_path / "supervisor.log").read_text()


def test_a_process_stopped_on_purpose_stays_down(tmp_path: Path) -> None:
    child = Child("import time; time.sleep(60)")
    child.start()
    supervisor = Supervisor(tmp_path / "supervisor.log")
    supervisor.add(child.supervised("held"))
    supervisor.start()
    try:
        child.stopped_on_purpose = True
        child.stop()
        time.sleep(1.5)
        assert supervisor.restarts()["held"] == 0 and len(child.starts) == 1
    finally:
        supervisor.stop()
