"""Alive across machines: every stage as two replicas on two hosts that share only the broker
and an S3 endpoint. Each host is a network namespace with its own loopback, processes, Triton
and local folder (alive_tools/embedded/hosts.py), started as `alive up --kafka ...` would be
on a machine of its own. Under load, one host vanishes (SIGKILL to every process on it) and
comes back: every job reaches exactly one end, no video is published twice, nothing is stuck.

Needs root and iproute2 (CI has both). Elsewhere: `sudo make test` or `sudo .venv/bin/python
-m pytest tests/test_many_hosts.py`; without root these tests are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from alive.jobs import TERMINAL_STATES
from alive.pipeline import PUBLISHED, STATUS
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import JobState, PublishedVideo, StatusEvent
from alive_tools.client import AliveClient
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.embedded.hosts import Host, Network, hosts_available
from alive_tools.keys import mint_token
from services.ingest.auth import CREATOR_SCOPES
from tests.support import NO_REVIEW_SAMPLE, SMALL_OUTPUT, MotoS3, photo_bytes, read_topic

pytestmark = [
    pytest.mark.stack,
    pytest.mark.timeout(1500),  # two hosts start, one twice, and drain 40 jobs
    pytest.mark.skipif(
        not hosts_available(), reason="needs root and iproute2 for network namespaces"
    ),
]

JOBS = 40
CREATORS = 10  # a creator may have 8 jobs under way
ALIVE_CLI = Path(sys.executable).parent / "alive"


@dataclass
class HostStack:
    """`alive up` on one host, joined to the shared broker, store and keys."""

    host: Host
    workdir: Path
    command: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    state: dict[str, object] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.workdir / "stack.json"

    def start(self, timeout_s: float = 420) -> None:
        self.state_file.unlink(missing_ok=True)
        with (self.workdir / "up.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.host.command(self.command), env=self.env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout_s
        while not self.state_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log_tail = (self.workdir / "up.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{self.host.name} did not come up:\n{log_tail}")
            time.sleep(0.2)
        self.state = json.loads(self.state_file.read_text())

    def client(self, creator: str = "creator") -> AliveClient:
        port = str(self.state["api"]).rsplit(":", 1)[1]
        token = mint_token(Path(str(self.state["token_issuer_key"])), creator, CREATOR_SCOPES)
        return AliveClient(
            f"{self.host.address}:{port}",
            token=token,
            tls_ca=Path(str(self.state["api_tls_ca"])).read_bytes(),
            server_name="localhost",  # the API's development certificate names localhost
        )

    def vanish(self) -> int:
        """Every process of the host killed at once, as when a machine dies."""
        killed = self.host.kill_all()
        if self.proc is not None:
            self.proc.wait()
        return killed


@dataclass
class Cluster:
    kafka: str
    settings: ServiceSettings
    hosts: list[HostStack]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("hosts")
    with Network() as network:
        broker = EmbeddedBroker(root / "broker.log", host=network.gateway)
        s3 = MotoS3(root / "moto.log", host=network.gateway)
        broker.start()
        s3.start()
        blob_url = f"s3://{s3.BUCKET}/hosts"
        stacks = []
        try:
            for name in ("a", "b"):
                workdir = root / name
                workdir.mkdir()
                command = [
                    *(str(ALIVE_CLI), "up", "--workdir", str(workdir)),
                    *("--kafka", broker.bootstrap_servers, "--blob-url", blob_url),
                    *("--secrets", str(root / "secrets"), "--api-host", "0.0.0.0"),
                    *("--ready-timeout-s", "300"),  # two hosts start on a small machine
                    # One review web app is enough (it is one replica by design).
                    *(() if name == "a" else ("--no-review-web",)),
                ]
                env = {**os.environ, **s3.environment, **NO_REVIEW_SAMPLE}
                stack = HostStack(network.add_host(name), workdir, command, env)
                stack.start()  # one after the other: the first makes the shared keys
                stacks.append(stack)
            settings = ServiceSettings(
                kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
                blob_url=blob_url,
            )
            yield Cluster(broker.bootstrap_servers, settings, stacks)
        finally:
            for stack in stacks:
                stack.vanish()
            s3.stop()
            broker.stop()


def drive(
    cluster: Cluster, creators: dict[str, str], deadline: float
) -> dict[str, JobState.ValueType]:
    """Publishes each job once READY, until every job has ended or the deadline passes; the
    state each job ended in. ``creators``: each job's creator (only they may see it)."""
    clients = {
        creator: [host.client(creator) for host in cluster.hosts]
        for creator in set(creators.values())
    }
    ended: dict[str, JobState.ValueType] = {}
    published: set[str] = set()
    while len(ended) < len(creators) and time.monotonic() < deadline:
        for job_id, creator in creators.items():
            if job_id in ended:
                continue
            for client in clients[creator]:  # any replica answers for any job
                try:
                    view = client.get(job_id, timeout_s=5)
                    if view.state == JobState.READY and job_id not in published:
                        client.publish(job_id, timeout_s=5)
                        published.add(job_id)
                    elif view.state in TERMINAL_STATES:
                        ended[job_id] = view.state
                    break
                except grpc.RpcError:  # that replica is down: ask the next
                    continue
        time.sleep(0.5)
    for pair in clients.values():
        for client in pair:
            client.close()
    return ended


def test_a_host_vanishes_under_load_and_every_job_ends_once(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    second = cluster.hosts[1]
    creators: dict[str, str] = {}
    for n in range(JOBS):  # half through each host's API
        creator = f"creator-{n % CREATORS}"
        with cluster.hosts[n % 2].client(creator) as client:
            photo = photo_bytes(seed=n)
            submitted = client.submit(photo, f"waves at dusk {n}", output=SMALL_OUTPUT)
        creators[submitted.job_id] = creator
    job_ids = list(creators)
    time.sleep(3)  # work is under way on both hosts
    killed = second.vanish()
    time.sleep(5)
    second.start()
    back_at = time.monotonic()
    ended = drive(cluster, creators, deadline=back_at + 600)
    drain_s = time.monotonic() - back_at

    statuses = [
        StatusEvent.FromString(r.value) for r in read_topic(cluster.kafka, STATUS.default_name)
    ]
    ends: dict[str, set[int]] = defaultdict(set)
    end_events: Counter[str] = Counter()
    for event in statuses:
        if event.job_id in job_ids and event.state in TERMINAL_STATES:
            ends[event.job_id].add(event.state)
            end_events[event.job_id] += 1
    videos: dict[str, set[str]] = defaultdict(set)
    for record in read_topic(cluster.kafka, PUBLISHED.default_name):
        video = PublishedVideo.FromString(record.value)
        videos[video.job_id].add(video.video.uri)

    stuck = [j for j in job_ids if j not in ended]
    two_ends = [j for j in job_ids if len(ends[j]) > 1]
    twice_published = [j for j in job_ids if len(videos[j]) > 1]
    row = {
        "jobs": len(job_ids),
        "ended": len(ended),
        "lost/stuck": len(stuck),
        "two ends": len(two_ends),
        "published twice": len(twice_published),
        "repeated end events": sum(n - 1 for n in end_events.values() if n > 1),
        "drain s": f"{drain_s:.1f}",
    }
    with capsys.disabled():
        print(f"\n  a host vanished under load ({killed} processes killed)")
        print("  | " + " | ".join(row) + " |")
        print("  | " + " | ".join(str(v).rjust(len(k)) for k, v in row.items()) + " |")
    assert not stuck, f"never ended: {stuck}"
    assert not two_ends, {j: ends[j] for j in two_ends}
    assert not twice_published, {j: videos[j] for j in twice_published}
    assert all(state == JobState.PUBLISHED for state in ended.values()), Counter(ended.values())
