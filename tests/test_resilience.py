"""Dependencies that fail, on a real embedded stack of this module's own (its broker is
stopped and Triton killed, which the session's stack must not see): readiness and metrics
tell the truth within seconds, Submit answers UNAVAILABLE at once, the log is not flooded,
a broker that comes back empty gets its topics again, and the supervisor restarts what
dies. After each, a job still completes."""

from __future__ import annotations

import os
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import pytest

from alive.v1.events_pb2 import JobState
from alive_tools.client import AliveClient
from alive_tools.embedded.stack import REVIEW_WEB, EmbeddedStack
from tests.support import NO_REVIEW_SAMPLE, SMALL_OUTPUT, path_of, photo_bytes, wait_for

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(
        tmp_path_factory.mktemp("resilience"), shutdown_grace_s=5, extra_env=NO_REVIEW_SAMPLE
    )
    with running:
        yield running


@pytest.fixture(scope="module")
def api(own_stack: EmbeddedStack) -> Iterator[AliveClient]:
    with own_stack.client() as client:
        yield client


def readyz(stack: EmbeddedStack, name: str) -> tuple[int, str]:
    url = f"http://127.0.0.1:{stack.services[name].http_port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return 0, str(exc)


def dependency_up(stack: EmbeddedStack, name: str, dependency: str) -> float | None:
    url = f"http://127.0.0.1:{stack.services[name].http_port}/metrics"
    with urllib.request.urlopen(url, timeout=2) as answer:
        text = answer.read().decode()
    pattern = rf'alive_dependency_up{{dependency="{dependency}",service="{name}"}} (\S+)'
    found = re.search(pattern, text)
    return float(found.group(1)) if found else None


def within(seconds: float, condition: Callable[[], bool]) -> float:
    """Waits until ``condition`` holds; returns how long it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.2)
    return time.monotonic() - started


def stages(stack: EmbeddedStack) -> list[str]:
    return [name for name in stack.services if name != REVIEW_WEB]


def a_job_completes(api: AliveClient, timeout_s: float = 180) -> None:
    job_id = api.submit(photo_bytes(), "a calm lake", output=SMALL_OUTPUT).job_id
    view = wait_for(api, job_id, timeout_s=timeout_s)
    assert view.state == JobState.READY, path_of(view)


def test_a_service_that_dies_is_restarted_and_jobs_go_on(
    own_stack: EmbeddedStack, api: AliveClient
) -> None:
    service = own_stack.services["moderation-prompt"]
    assert service.proc is not None
    killed = service.proc.pid
    os.kill(killed, signal.SIGKILL)  # not through the stack: a crash
    within(30, lambda: own_stack.supervisor.restarts()["moderation-prompt"] == 1)
    assert service.proc.pid != killed
    within(60, lambda: readyz(own_stack, "moderation-prompt")[0] == 200)
    log = (own_stack.logs / "supervisor.log").read_text()
    assert "moderation-prompt exited (code -9)" in log
    assert "moderation-prompt restarted (restart 1)" in log
    assert own_stack.describe()["restarts"]["moderation-prompt"] == 1  # type: ignore[index]
    a_job_completes(api)


def test_a_dead_broker_is_reported_within_seconds_and_submit_is_unavailable(
    own_stack: EmbeddedStack, api: AliveClient
) -> None:
    a_job_completes(api)
    own_stack.broker.stop()  # on purpose: the supervisor leaves it down
    down_for = within(15, lambda: all(readyz(own_stack, n)[0] == 503 for n in stages(own_stack)))
    for name in stages(own_stack):
        _, body = readyz(own_stack, name)
        assert "broker" in body, (name, body)
        assert dependency_up(own_stack, name, "broker") == 0, name
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as refused:
        api.submit(photo_bytes(), "", output=SMALL_OUTPUT)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 3
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["alive-reason-code"] == "QUEUE_UNAVAILABLE"

    # The log holds a few lines about it, not a line per retry of every Kafka client.
    sizes = {n: len(own_stack.log_tail(n, 10**9).splitlines()) for n in stages(own_stack)}
    time.sleep(10)
    grown = {n: len(own_stack.log_tail(n, 10**9).splitlines()) - sizes[n] for n in sizes}
    assert max(grown.values()) <= 20, grown
    print(
        f"\nbroker down: every stage not ready after {down_for:.1f} s; log lines in 10 s: {grown}"
    )

    # Back, empty (a memory-only broker): the services create the topics again themselves.
    own_stack.broker.restart()
    back_in = within(90, lambda: all(readyz(own_stack, n)[0] == 200 for n in stages(own_stack)))
    print(f"broker back: every stage ready again after {back_in:.1f} s")
    assert all(dependency_up(own_stack, n, "topics") == 1 for n in stages(own_stack))
    a_job_completes(api)


def test_a_dead_triton_makes_the_generator_not_ready_and_comes_back(
    own_stack: EmbeddedStack, api: AliveClient
) -> None:
    pid = own_stack.triton.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)  # the server and its model processes, as a crash would
    within(15, lambda: readyz(own_stack, "generator")[0] == 503)
    assert dependency_up(own_stack, "generator", "triton_model") == 0
    within(120, lambda: own_stack.supervisor.restarts()["triton"] == 1)
    within(30, lambda: readyz(own_stack, "generator")[0] == 200)
    assert "triton restarted" in (own_stack.logs / "supervisor.log").read_text()
    a_job_completes(api)


def test_a_dead_model_process_is_reloaded_and_the_job_waiting_on_it_completes(
    own_stack: EmbeddedStack, api: AliveClient
) -> None:
    killed = own_stack.triton.model_pids()
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)  # Triton lives on, and still calls the model ready
    a_job_completes(api)  # its first try learns the model's process died; the retry works
    log = own_stack.log_tail("generator", 10**9)
    assert "reloading the model: its process died" in log
    assert not set(own_stack.triton.model_pids()) & set(killed)
