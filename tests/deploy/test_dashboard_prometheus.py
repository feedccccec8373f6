"""The Grafana dashboard (deploy/grafana) against a real Prometheus server (Debian's
`prometheus`, installed by .ci/run) scraping the embedded stack through a full job,
published: every panel's query is valid PromQL there, the main series have values, and no
metric label carries the job's prompt or id."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from alive.v1.events_pb2 import JobState
from alive_tools.client import AliveClient
from alive_tools.embedded.stack import EmbeddedStack
from tests.support import SMALL_OUTPUT, photo_bytes, wait_for

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "alive-dashboard.json"
PROMPT = "a lighthouse blinking over quiet waves"
# Panels that must show data after one published job on the embedded stack. The others
# (vetoes, dead letters, errors) need a failure to show anything, and GPU utilisation a GPU.
MAIN_PANELS = {
    "Jobs per second by outcome",
    "End-to-end latency (submission to READY)",
    "Stage latency p95",
    "Consumer lag (records waiting per group)",
    "Oldest waiting record per group",
    "Triton queue time and generator-side request time",
    "Triton mean batch size",
    "Review queue age (oldest publish request waiting)",
    "gRPC API calls by method and code",
    "Resident memory by service",
    "Running builds",
}


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (Debian package prometheus; .ci/run installs it)")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = _get(f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        assert answer["status"] == "success", (expr, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, expr: str, timeout_s: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(expr)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


@pytest.fixture(scope="module")
def prometheus(
    stack: EmbeddedStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    binary = _binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    described = stack.describe()
    services: dict[str, str] = described["metrics"]  # type: ignore[assignment]
    targets = [urllib.parse.urlsplit(url).netloc for url in services.values()]
    triton = urllib.parse.urlsplit(str(described["triton_metrics"])).netloc
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "alive", "static_configs": [{"targets": targets}]},
            {"job_name": "triton", "static_configs": [{"targets": [triton]}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (workdir / "prometheus.log").read_text()[-2000:]
            try:
                up = server.query("up == 1")
                if len(up) == len(targets) + 1:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Prometheus did not scrape every target"
            time.sleep(0.3)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def published_job(prometheus: Prometheus, client: AliveClient) -> str:
    """One job, submitted once Prometheus scrapes (so rates see it), taken to PUBLISHED."""
    time.sleep(2)  # a first sample of every counter before the job moves them
    job_id = client.submit(photo_bytes(), PROMPT, output=SMALL_OUTPUT, seed=3).job_id
    view = wait_for(client, job_id)
    assert view.state == JobState.READY, view
    client.publish(job_id)
    view = wait_for(client, job_id, {JobState.PUBLISHED, JobState.VETOED})
    assert view.state == JobState.PUBLISHED, view
    time.sleep(3)  # a few scrapes after the job ended
    return job_id


def _panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = json.loads(DASHBOARD.read_text())["panels"]
    return panels


def test_every_panel_query_runs_and_the_main_series_have_values(
    prometheus: Prometheus, published_job: str
) -> None:
    titles = {p["title"] for p in _panels()}
    assert titles >= MAIN_PANELS
    empty = []
    for panel in _panels():
        values: list[float] = []
        for target in panel["targets"]:
            for series in prometheus.query(target["expr"]):  # invalid PromQL fails here
                values.append(float(series["value"][1]))
        if panel["title"] in MAIN_PANELS and not any(math.isfinite(v) for v in values):
            empty.append(panel["title"])
    assert empty == [], "dashboard panels without data after a published job"


def test_lag_is_exported_per_group_and_partition(
    prometheus: Prometheus, published_job: str
) -> None:
    lag = prometheus.wait_for('alive_consumer_lag_messages{group="alive-audio"}')
    assert lag, "the audio stage exports no lag"
    for series in lag:
        labels = series["metric"]
        assert labels["topic"] == "alive.generated"
        assert labels["partition"].isdigit()
    seconds = prometheus.query('alive_consumer_lag_seconds{group="alive-audio"}')
    assert {s["metric"]["partition"] for s in seconds} == {s["metric"]["partition"] for s in lag}


def test_no_label_carries_the_prompt_or_the_job_id(
    prometheus: Prometheus, published_job: str
) -> None:
    series = _get(
        f"{prometheus.url}/api/v1/series?" + urllib.parse.urlencode({"match[]": '{job=~".+"}'})
    )
    assert series["status"] == "success"
    assert len(series["data"]) > 100
    every_value = {v for s in series["data"] for v in s.values()}
    assert not [v for v in every_value if published_job in v or PROMPT in v or "lighthouse" in v]
