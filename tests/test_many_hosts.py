"""Alive across machines: every stage as two replicas on two hosts that share only the broker
and an S3 endpoint. Each host is a network namespace with its own loopback, processes, Triton
and local folder (alive_tools/embedded/hosts.py), started as `alive up --kafka ...` would be
on a machine of its own. Three scenarios, each under a load of 40 jobs of its own, on one
cluster, each printing its row of a summary table (jobs, lost, duplicated, stuck, drain time):

- a host vanishes (SIGKILL to every process on it) and comes back;
- each host's ingest replica (the API) restarts in turn, by SIGTERM and by SIGKILL: Watch
  streams on the other replica keep delivering, Get through either answers for every job once
  it is back, a Watch reopened on it catches up, and the same request submitted through both
  replicas (also while one restarts) is one job;
- a rebalance storm: every 2-5 s a stage replica leaves its group (frozen, or stopped and
  restarted by the supervisor) and the previous one joins again.

Each time every job reaches exactly one end, no video is published twice, no stage's output is
made twice, nothing is stuck.

Needs root and iproute2 (CI has both). Elsewhere: `sudo make test` or `sudo .venv/bin/python
-m pytest tests/test_many_hosts.py`; without root these tests are skipped.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import grpc
import pytest

from alive.jobs import TERMINAL_STATES
from alive.pipeline import GENERATED, INGEST, PIPELINE, PUBLISHED, READY, SCORED, SIGNED, STATUS
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import SubmitResponse
from alive.v1.events_pb2 import Job, JobState, PublishedVideo, StatusEvent
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
# What a replica that is down or restarting answers; a client tries again.
RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
STORM_MAX_S = 150  # the storm stops here if the jobs have not all ended by then


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
    cluster: Cluster,
    creators: dict[str, str],
    deadline: float,
    all_submitted: threading.Event | None = None,
) -> dict[str, JobState.ValueType]:
    """Publishes each job once READY, until every job has ended or the deadline passes; the
    state each job ended in. ``creators``: each job's creator (only they may see it); it may
    grow on another thread until ``all_submitted`` is set."""
    clients: dict[str, list[AliveClient]] = {}
    ended: dict[str, JobState.ValueType] = {}
    published: set[str] = set()
    while time.monotonic() < deadline:
        submitted = all_submitted is None or all_submitted.is_set()
        jobs = list(creators.items())
        if submitted and len(ended) == len(jobs):
            break
        for job_id, creator in jobs:
            if job_id in ended:
                continue
            if creator not in clients:
                clients[creator] = [host.client(creator) for host in cluster.hosts]
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


def report(
    cluster: Cluster,
    title: str,
    job_ids: list[str],
    ended: dict[str, JobState.ValueType],
    drain_s: float,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Prints the scenario's row of the summary table, from what the topics hold, and
    asserts it: every job ended once, published, no video or stage output made twice."""
    statuses = [
        StatusEvent.FromString(r.value)
        for r in read_topic(cluster.kafka, STATUS.default_name, timeout_s=30)
    ]
    ends: dict[str, set[int]] = defaultdict(set)
    end_events: Counter[str] = Counter()
    first_end: dict[str, StatusEvent] = {}
    repeated_by: Counter[str] = Counter()  # who sent a job's end again, and was it the same
    for event in statuses:
        if event.job_id in job_ids and event.state in TERMINAL_STATES:
            ends[event.job_id].add(event.state)
            end_events[event.job_id] += 1
            if event.job_id not in first_end:
                first_end[event.job_id] = event
            else:
                same = "same event" if event == first_end[event.job_id] else "differing"
                repeated_by[f"{event.stage}, {same}"] += 1
    videos: dict[str, set[str]] = defaultdict(set)
    for record in read_topic(cluster.kafka, PUBLISHED.default_name, timeout_s=30):
        video = PublishedVideo.FromString(record.value)
        videos[video.job_id].add(video.video.uri)
    # Each output's key is random (alive/blobs.py output_key): a step run twice for a job
    # and both runs' results sent on would show as two videos of the job on a topic.
    outputs: dict[tuple[str, str], set[str]] = defaultdict(set)
    for topic in (GENERATED, SCORED, SIGNED, READY):
        for record in read_topic(cluster.kafka, topic.default_name, timeout_s=30):
            job = Job.FromString(record.value)
            outputs[(topic.default_name, job.job_id)].add(job.video.uri)

    stuck = [j for j in job_ids if j not in ended]
    two_ends = [j for j in job_ids if len(ends[j]) > 1]
    twice_published = [j for j in job_ids if len(videos[j]) > 1]
    twice_made = {key: uris for key, uris in outputs.items() if key[1] in job_ids and len(uris) > 1}
    row = {
        "jobs": len(job_ids),
        "ended": len(ended),
        "lost/stuck": len(stuck),
        "two ends": len(two_ends),
        "published twice": len(twice_published),
        "outputs made twice": len(twice_made),
        "repeated end events": sum(n - 1 for n in end_events.values() if n > 1),
        "drain s": f"{drain_s:.1f}",
    }
    with capsys.disabled():
        print(f"\n  {title}")
        print("  | " + " | ".join(row) + " |")
        print("  | " + " | ".join(str(v).rjust(len(k)) for k, v in row.items()) + " |")
        if repeated_by:
            print(f"  repeated end events by sender: {dict(repeated_by)}")
    assert not stuck, f"never ended: {stuck}"
    assert not two_ends, {j: ends[j] for j in two_ends}
    assert not twice_published, {j: videos[j] for j in twice_published}
    assert not twice_made, twice_made
    assert all(state == JobState.PUBLISHED for state in ended.values()), Counter(ended.values())


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
    time.sleep(3)  # work is under way on both hosts
    killed = second.vanish()
    time.sleep(5)
    second.start()
    back_at = time.monotonic()
    ended = drive(cluster, creators, deadline=back_at + 600)
    drain_s = time.monotonic() - back_at
    title = f"a host vanished under load ({killed} processes killed; drain from its return)"
    report(cluster, title, list(creators), ended, drain_s, capsys)


def submit_until_answered(host: HostStack, creator: str, n: int, request_id: str) -> SubmitResponse:
    """Job ``n`` submitted through ``host`` with ``request_id``, tried again while the host's
    API is down (a replica restarting): a fresh channel each try, so that no reconnect
    backoff of gRPC's hides the moment it is back."""
    deadline = time.monotonic() + 180
    while True:
        try:
            with host.client(creator) as client:
                return client.submit(
                    photo_bytes(seed=n),
                    f"waves at dusk {n}",
                    request_id=request_id,
                    output=SMALL_OUTPUT,
                    timeout_s=30,
                )
        except grpc.RpcError as exc:
            if exc.code() not in RETRIED or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def answers(host: HostStack, creator: str, job_id: str, within_s: float) -> bool:
    """Whether Get through ``host`` answers for the job, tried again while unavailable."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            with host.client(creator) as client:
                return client.get(job_id, timeout_s=10).job_id == job_id
        except grpc.RpcError as exc:
            if exc.code() not in RETRIED or time.monotonic() > deadline:
                return False
            time.sleep(0.5)


class Watcher:
    """One Watch stream, read on a thread: each event with the time it came, and the error
    that ended the stream, if any."""

    def __init__(self, client: AliveClient, job_id: str) -> None:
        self.job_id = job_id
        self.events: list[tuple[float, StatusEvent]] = []
        self.error: grpc.RpcError | None = None
        self._client = client
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self._client.watch(self.job_id, timeout_s=900):
                self.events.append((time.monotonic(), event))
        except grpc.RpcError as exc:
            self.error = exc

    def came_between(self, start: float, end: float) -> int:
        return sum(1 for at, _ in self.events if start <= at <= end)

    def transitions(self) -> list[int]:
        """The job's states as the stream told them (progress reports left out)."""
        return [event.state for _, event in self.events if not event.HasField("progress")]

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)


def partitions_assigned(stack: HostStack, since: float) -> int:
    """How many times a replica on the host was assigned partitions since ``since`` (epoch
    seconds), by the runner's log lines (one per rebalance the replica took part in)."""
    count = 0
    for log in (stack.workdir / "logs").glob("*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if (
                line.startswith("{")
                and '"partitions assigned"' in line
                and json.loads(line)["ts"] >= since
            ):
                count += 1
    return count


def ingest_pid(stack: HostStack) -> int:
    pids = stack.host.pids_of(INGEST.module)
    assert len(pids) == 1, f"{stack.host.name} runs {len(pids)} ingest replicas"
    return pids[0]


@dataclass
class IngestRestart:
    """One ingest replica stopped with ``sig`` while the other serves, and back."""

    restarting: HostStack
    surviving: HostStack
    sig: signal.Signals
    down_at: float = 0.0
    back_at: float = 0.0
    # Streams open on the surviving replica throughout, and opened again on the restarted one.
    kept: list[Watcher] = field(default_factory=list)
    reopened: list[Watcher] = field(default_factory=list)


def test_ingest_replicas_restart_under_load_and_serve_throughout(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each host's ingest replica (the API and the first stage) is stopped in turn, once by
    SIGTERM (a rolling restart) and once by SIGKILL (a crash), and comes back by the stack's
    supervisor. Watch streams on the other replica keep delivering; Get through either
    answers for every job once it is back; a Watch opened on the restarted replica catches up
    and follows the job to its end. Every request is submitted through both replicas, some
    while one restarts: one job id, one job."""
    first, second = cluster.hosts
    creators: dict[str, str] = {}
    request_of: dict[str, tuple[str, str]] = {}  # job id: (creator, request id)
    clients: dict[tuple[str, str], AliveClient] = {}

    def client(stack: HostStack, creator: str) -> AliveClient:
        key = (stack.host.name, creator)
        if key not in clients:
            clients[key] = stack.client(creator)
        return clients[key]

    def submit(n: int, through: HostStack) -> str:
        creator, request_id = f"ingest-creator-{n % CREATORS}", f"ingest-{n}"
        job_id = submit_until_answered(through, creator, n, request_id).job_id
        creators[job_id], request_of[job_id] = creator, (creator, request_id)
        return job_id

    def resubmit(job_id: str, n: int, through: HostStack) -> None:
        creator, request_id = request_of[job_id]
        again = submit_until_answered(through, creator, n, request_id)
        assert (again.job_id, again.existing) == (job_id, True), (n, through.host.name)

    steady = JOBS - 2 * 5  # and 5 more while each replica restarts
    for n in range(steady):  # each through one replica, then again through the other
        job_id = submit(n, cluster.hosts[n % 2])
        resubmit(job_id, n, cluster.hosts[(n + 1) % 2])

    restarts = [
        IngestRestart(second, first, signal.SIGTERM),
        IngestRestart(first, second, signal.SIGKILL),
    ]
    restarts[0].kept = [Watcher(client(first, c), j) for j, c in creators.items()]
    all_submitted = threading.Event()
    numbers = iter(range(steady, JOBS))
    with ThreadPoolExecutor(max_workers=1) as pool:
        driving = pool.submit(drive, cluster, creators, time.monotonic() + 600, all_submitted)
        try:
            for step, restart in enumerate(restarts):
                if step:  # the streams opened on the replica that now survives
                    restart.kept = restarts[step - 1].reopened
                old_pid = ingest_pid(restart.restarting)
                restart.down_at = time.monotonic()
                os.kill(old_pid, restart.sig)
                # While it is down: new jobs through the survivor, which answers for all.
                fresh = [(n, submit(n, restart.surviving)) for n in islice(numbers, 5)]
                unanswered = [
                    j for j, c in list(creators.items()) if not answers(restart.surviving, c, j, 0)
                ]
                assert not unanswered, f"{restart.surviving.host.name} did not answer Get"
                # The same requests through the restarting replica, as soon as it answers.
                for n, job_id in fresh:
                    resubmit(job_id, n, restart.restarting)
                assert ingest_pid(restart.restarting) != old_pid, "the old replica answered"
                restart.back_at = time.monotonic()
                unanswered = [
                    j
                    for j, c in list(creators.items())
                    if not answers(restart.restarting, c, j, 30)
                ]
                assert not unanswered, f"{restart.restarting.host.name} did not answer Get"
                restart.reopened = [
                    Watcher(client(restart.restarting, c), j) for j, c in list(creators.items())
                ]
                broken = [w.job_id for w in restart.kept if w.error is not None]
                assert not broken, f"Watch on {restart.surviving.host.name} broke: {broken}"
        finally:
            all_submitted.set()
        ended = driving.result()
    last_back_at = restarts[-1].back_at
    drain_s = time.monotonic() - last_back_at

    # The streams kept open delivered while the other replica was down; the reopened ones
    # caught up and followed every job to its end, as Get tells the job's history.
    delivered = [sum(w.came_between(r.down_at, r.back_at) for w in r.kept) for r in restarts]
    assert all(delivered), f"events delivered on the surviving replica while down: {delivered}"
    for watcher in restarts[0].reopened + restarts[1].reopened:
        watcher.join(timeout_s=60)
        assert watcher.error is None, (watcher.job_id, watcher.error)
        with second.client(creators[watcher.job_id]) as reader:
            history = [e.state for e in reader.get(watcher.job_id).history]
        assert watcher.transitions() == history, watcher.job_id
    for open_client in clients.values():
        open_client.close()

    # One job per request, whichever replica took it and how often.
    jobs_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in read_topic(cluster.kafka, STATUS.default_name, timeout_s=30):
        event = StatusEvent.FromString(record.value)
        if event.request_id.startswith("ingest-"):
            jobs_of[(event.creator_id, event.request_id)].add(event.job_id)
    assert {r: {j} for j, r in request_of.items()} == dict(jobs_of)

    sigs = ", ".join(
        f"{r.restarting.host.name} by {r.sig.name} back in {r.back_at - r.down_at:.1f} s"
        for r in restarts
    )
    title = (
        f"ingest replicas restarted under load ({sigs}; {sum(delivered)} events on streams "
        f"kept open; {len(request_of)} requests through both replicas; drain from the last return)"
    )
    report(cluster, title, list(creators), ended, drain_s, capsys)


def test_a_rebalance_storm_loses_and_duplicates_nothing(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    """While 40 jobs run, every 2-5 s one stage replica leaves its consumer group and the one
    that left before joins again, round after round through every stage on both hosts, so
    the partitions of each stage move again and again. Most leave frozen (SIGSTOP: the group
    evicts it after its session timeout, and when thawed it finds its partitions gone, work
    in hand: a zombie); every fourth is stopped instead (SIGTERM: it says goodbye, or
    SIGKILL) and joins again as a new member when the stack's supervisor restarts it."""
    rng = random.Random(9)
    replicas = [(stack, spec) for spec in PIPELINE.stages for stack in cluster.hosts]
    calm = threading.Event()
    churned: Counter[str] = Counter()

    def storm() -> None:
        storm_ends = time.monotonic() + STORM_MAX_S
        frozen: list[int] = []
        turn = 0
        while not calm.wait(rng.uniform(2, 5)) and time.monotonic() < storm_ends:
            for pid in frozen:  # the one that left last joins again
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            frozen.clear()
            if turn % len(replicas) == 0:
                rng.shuffle(replicas)
            stack, spec = replicas[turn % len(replicas)]
            sig = (
                (signal.SIGTERM, signal.SIGKILL)[turn // 4 % 2] if turn % 4 == 3 else signal.SIGSTOP
            )
            turn += 1
            for pid in stack.host.pids_of(spec.module):  # none while being restarted
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                    churned[sig.name] += 1
                    if sig == signal.SIGSTOP:
                        frozen.append(pid)
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    creators: dict[str, str] = {}
    storming = threading.Thread(target=storm, daemon=True)
    storm_at, storm_wall_at = time.monotonic(), time.time()
    storming.start()  # from the first job on, so that it lasts as long as the load
    try:
        for n in range(JOBS):  # half through each host's API, whichever replica is there
            creator, request_id = f"storm-creator-{n % CREATORS}", f"storm-{n}"
            submitted = submit_until_answered(cluster.hosts[n % 2], creator, n, request_id)
            creators[submitted.job_id] = creator
        ended = drive(cluster, creators, deadline=time.monotonic() + 600)
    finally:
        calm.set()
        storming.join()
    drain_s = time.monotonic() - storm_at
    leaves = sum(churned.values())
    moves = sum(partitions_assigned(stack, since=storm_wall_at) for stack in cluster.hosts)
    title = (
        f"a rebalance storm over {min(drain_s, STORM_MAX_S):.0f} s (replicas left: "
        f"{churned['SIGSTOP']} frozen, {churned['SIGTERM']} by SIGTERM, {churned['SIGKILL']} by "
        f"SIGKILL, each back; {moves} partition assignments; drain from the storm's start)"
    )
    report(cluster, title, list(creators), ended, drain_s, capsys)
    # Each leave hands the replica's partitions to the stage's other replica at least once.
    assert moves >= leaves > 0, (moves, leaves)
