"""Session fixtures: real components (broker, Triton, every service) started once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alive_tools.client import AliveClient
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.embedded.stack import EmbeddedStack
from tests.support import NO_REVIEW_SAMPLE, MotoS3, photo_bytes

# Tests that start real components are marked ``stack`` wherever they take one of these.
_REAL_COMPONENTS = {"broker", "stack", "client", "triton", "s3"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _REAL_COMPONENTS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker(tmp_path_factory.mktemp("broker") / "broker.log") as running:
        yield running


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    server = MotoS3(tmp_path_factory.mktemp("s3") / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    workdir = tmp_path_factory.mktemp("stack")
    # Every span of every service to <workdir>/traces (tests/test_privacy.py reads them).
    env = {**NO_REVIEW_SAMPLE, "ALIVE_TRACE_DIR": str(workdir / "traces")}
    running = EmbeddedStack(workdir, shutdown_grace_s=5, extra_env=env)
    with running:
        yield running


@pytest.fixture(scope="session")
def client(stack: EmbeddedStack) -> Iterator[AliveClient]:
    with stack.client() as api:
        yield api


@pytest.fixture
def small_photo() -> bytes:
    return photo_bytes()


@pytest.fixture(scope="session")
def sample_photo() -> Path:
    return Path(__file__).resolve().parents[1] / "samples" / "chelsea.jpg"
