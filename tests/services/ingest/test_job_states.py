"""Job states on a real broker: ingest's folder writes each job's latest state to the
compacted alive.jobs, and a status view reads it, so a restarted ingest knows every job
without reading alive.status, keeps a bounded cache, follows live changes, and forgets a
job erased with a tombstone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace

import grpc
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from alive.blobs import LocalBlobStore, StageLedger
from alive.dependencies import BLOB_STORE, BROKER, TOPICS, BlobStoreProbe, DependencyMonitor
from alive.erasure import Eraser, job_data_steps
from alive.kafka import BrokerProbes, ensure_topics, make_producer, stage_topics
from alive.pipeline import INGEST, JOBS, PIPELINE, REQUESTS, STATUS
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import GetJobRequest, JobView, SubmitRequest
from alive.v1.api_pb2_grpc import AliveStub
from alive.v1.events_pb2 import JobState, Progress, StatusEvent
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.keys import ApiKeys, ensure_api_keys, mint_token
from services.ingest.api import AliveApi, ApiServer
from services.ingest.auth import CREATOR_SCOPES, TokenVerifier
from services.ingest.job_states import ERASED, STATUS_OFFSET, JobStateFolder, JobStateLookup
from services.ingest.settings import IngestSettings
from services.ingest.stage import JobIds
from services.ingest.status_view import StatusView
from tests.support import photo_bytes, read_topic

Auth = tuple[tuple[str, str], ...]

PATH = (JobState.SUBMITTED, JobState.ACCEPTED, JobState.READY)
STAGES = {
    JobState.SUBMITTED: "api",
    JobState.ACCEPTED: "ingest",
    JobState.READY: "moderation-video",
}


def settings_for(broker: EmbeddedBroker, suffix: str) -> ServiceSettings:
    return ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        topics={t.key: f"{t.default_name}-{suffix}" for t in PIPELINE.topics()},
    )


@asynccontextmanager
async def ingest(settings: ServiceSettings, **own: int) -> AsyncIterator[StatusView]:
    """The status view and the folder, as the ingest service runs them."""
    async with ingest_replica(settings, **own) as (view, _):
        yield view


@asynccontextmanager
async def ingest_replica(
    settings: ServiceSettings, **own: int
) -> AsyncIterator[tuple[StatusView, JobStateFolder]]:
    ingest_settings = IngestSettings(**own)  # type: ignore[arg-type]
    producer = make_producer(settings, "job-states-test")
    await producer.start()
    view = StatusView(settings, ingest_settings)
    await view.start()
    folder = JobStateFolder(
        settings, ingest_settings, producer, view.lookup, view.may_exist, view.caught_up
    )
    view.on_erased.append(folder.forget)
    await folder.start()
    try:
        yield view, folder
    finally:
        await folder.stop()
        await view.stop()
        await producer.stop()


async def send_status(
    producer: AIOKafkaProducer, settings: ServiceSettings, *events: StatusEvent
) -> None:
    for e in events:
        await producer.send_and_wait(
            settings.topic(STATUS), e.SerializeToString(), key=e.job_id.encode()
        )


def transition(job_id: str, state: JobState.ValueType) -> StatusEvent:
    return StatusEvent(
        job_id=job_id, request_id=f"r-{job_id}", creator_id="c1", state=state, stage=STAGES[state]
    )


async def until(check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def state_of(view: StatusView, job_id: str) -> JobState.ValueType | None:
    got = await view.get(job_id)
    return got.state if got else None


async def test_a_restarted_ingest_knows_old_jobs_without_the_status_history(
    broker: EmbeddedBroker,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = settings_for(broker, suffix)
    await ensure_topics(settings)
    producer = make_producer(settings, "status-test")
    await producer.start()
    jobs = [f"job-{i:03d}" for i in range(30)]
    try:
        async with ingest(settings) as view:
            for state in PATH:
                await send_status(producer, settings, *(transition(j, state) for j in jobs))

            async def all_ready() -> bool:
                return all([await state_of(view, j) == JobState.READY for j in jobs])

            await until(all_ready)
    finally:
        await producer.stop()
    # alive.status past its retention: the restarted ingest reads a status topic with
    # nothing on it, so all it knows comes from alive.jobs. Its cache holds 5 jobs.
    after = settings.model_copy(update={"topics": {**settings.topics, "status": f"empty-{suffix}"}})
    await ensure_topics(after)
    async with ingest(after, job_cache_size=5) as restarted:
        assert restarted.ready
        for j in jobs:
            got = await restarted.get(j)
            assert got is not None, j
            assert got.state == JobState.READY and got.terminal is False
            assert [h.state for h in got.history] == list(PATH)
            assert restarted.cached_jobs <= 5
        # A retried Submit finds the job (the API's Submit asks exactly this) and so never
        # publishes a second SUBMITTED for a job the ledger has finished.
        assert restarted.lookup.count >= len(jobs) - 5
        assert restarted.in_flight() == 0
        assert await restarted.get("job-unknown") is None


async def test_the_cache_stays_bounded_and_watch_follows_live_changes(
    broker: EmbeddedBroker,
) -> None:
    settings = settings_for(broker, uuid.uuid4().hex[:8])
    await ensure_topics(settings)
    producer = make_producer(settings, "status-test")
    await producer.start()
    jobs = [f"many-{i:04d}" for i in range(300)]
    try:
        async with ingest(settings, job_cache_size=20) as view:
            await send_status(
                producer, settings, *(transition(j, JobState.SUBMITTED) for j in jobs)
            )

            async def last_known() -> bool:
                return await state_of(view, jobs[-1]) == JobState.SUBMITTED

            await until(last_known)
            assert view.cached_jobs <= 20
            assert view.in_flight("c1") == len(jobs)  # counted although evicted
            before = view.lookup.count
            first = await view.get(jobs[0])  # evicted long ago: looked up, whole
            assert first is not None and [h.state for h in first.history] == [JobState.SUBMITTED]
            assert view.lookup.count == before + 1
            assert view.cached_jobs <= 20

            watched = view.watch(jobs[0])
            assert (await anext(watched)).state == JobState.SUBMITTED
            report = StatusEvent(
                job_id=jobs[0], stage="ingest", progress=Progress(done=1, total=2, unit="steps")
            )
            await send_status(
                producer,
                settings,
                report,
                transition(jobs[0], JobState.ACCEPTED),
                transition(jobs[0], JobState.READY),
            )
            seen = [await asyncio.wait_for(anext(watched), 20) for _ in range(3)]
            assert seen[0].progress.done == 1 and seen[0].stage == "ingest"
            assert [e.state for e in seen[1:]] == [JobState.ACCEPTED, JobState.READY]
            await watched.aclose()
            assert view.in_flight("c1") == len(jobs) - 1
    finally:
        await producer.stop()


async def test_a_tombstone_on_the_job_states_erases_the_job(broker: EmbeddedBroker) -> None:
    settings = settings_for(broker, uuid.uuid4().hex[:8])
    await ensure_topics(settings)
    producer = make_producer(settings, "status-test")
    await producer.start()
    try:
        async with ingest(settings, job_cache_size=1) as view:
            await send_status(producer, settings, transition("gone", JobState.SUBMITTED))

            async def known() -> bool:
                return await view.get("gone") is not None

            await until(known)
            # What erasure sends: a null value under the job id on alive.jobs.
            await producer.send_and_wait(settings.topic(JOBS), None, key=b"gone")

            async def forgotten() -> bool:
                return await view.get("gone") is None

            await until(forgotten)
            assert (await view.lookup.find("gone"))[0] is ERASED
            # A late event of the erased job does not bring it back.
            await send_status(producer, settings, transition("gone", JobState.ACCEPTED))
            await send_status(producer, settings, transition("other", JobState.SUBMITTED))

            async def other_known() -> bool:
                return await view.get("other") is not None

            await until(other_known)  # the folder is past the late event
            assert await view.get("gone") is None
    finally:
        await producer.stop()


@asynccontextmanager
async def api_over(
    settings: ServiceSettings, keys: ApiKeys
) -> AsyncIterator[tuple[AliveStub, Auth]]:
    """Ingest's gRPC API over the view and the folder, as the service runs them."""
    own = IngestSettings(
        grpc_port=0,
        tls_cert_path=keys.tls_cert,
        tls_key_path=keys.tls_key,
        jwks_path=keys.jwks,
        job_id_key_path=keys.job_id_key,
    )
    blobs = LocalBlobStore(Path(settings.blob_url))
    async with ingest(settings) as view:
        producer = make_producer(settings, "api-test")
        await producer.start()
        # The queue's dependencies as the service probes them, probed once: all up.
        dependencies = DependencyMonitor("ingest", CollectorRegistry())
        probes = BrokerProbes(settings, stage_topics(INGEST))
        dependencies.add(BROKER, probes.broker)
        dependencies.add(TOPICS, probes.topics)
        dependencies.add(BLOB_STORE, BlobStoreProbe(blobs))
        for name in (BROKER, TOPICS, BLOB_STORE):
            await dependencies.check(name)
        await probes.close()
        handlers = AliveApi(
            own,
            settings,
            blobs,
            StageLedger(blobs),
            producer,
            view,
            JobIds.from_settings(own),
            TokenVerifier.from_settings(own),
            Eraser(blobs, job_data_steps(blobs)),
            dependencies=dependencies,
        )
        server = ApiServer(own, handlers)
        await server.start()
        credentials = grpc.ssl_channel_credentials(keys.tls_ca.read_bytes())
        token = mint_token(keys.issuer_key, "alice", CREATOR_SCOPES)
        try:
            async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
                yield AliveStub(channel), (("authorization", f"Bearer {token}"),)
        finally:
            await server.stop()
            await producer.stop()


async def test_after_the_status_history_expires_a_retried_submit_finds_its_job(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    settings = settings_for(broker, suffix).model_copy(update={"blob_url": str(tmp_path)})
    await ensure_topics(settings)
    keys = ensure_api_keys(tmp_path / "keys")
    submit = SubmitRequest(photo=photo_bytes(), prompt="a calm lake", request_id="retry-1")
    async with api_over(settings, keys) as (stub, auth):
        first = await stub.Submit(submit, timeout=10, metadata=auth)
        assert not first.existing
        producer = make_producer(settings, "stages")
        await producer.start()
        try:  # what the stages would say
            for state in PATH[1:]:
                await send_status(producer, settings, transition(first.job_id, state))
        finally:
            await producer.stop()

        async def ready() -> bool:
            got = await stub.Get(GetJobRequest(job_id=first.job_id), timeout=5, metadata=auth)
            return bool(got.state == JobState.READY)

        await until(ready)
    # alive.status has expired (an empty topic in its place); ingest restarts.
    after = settings.model_copy(update={"topics": {**settings.topics, "status": f"gone-{suffix}"}})
    await ensure_topics(after)
    async with api_over(after, keys) as (stub, auth):
        again = await stub.Submit(submit, timeout=10, metadata=auth)
        assert again.existing and again.job_id == first.job_id
        assert again.job.state == JobState.READY  # not a new job stuck in SUBMITTED
        got = await stub.Get(GetJobRequest(job_id=first.job_id), timeout=5, metadata=auth)
        assert [h.state for h in got.history] == list(PATH)
    requests = await asyncio.to_thread(
        read_topic, broker.bootstrap_servers, settings.topic(REQUESTS)
    )
    assert len(requests) == 1  # published once


async def test_two_ingest_replicas_fold_each_event_once_and_both_serve_every_job(
    broker: EmbeddedBroker,
) -> None:
    """The replicas share the status partitions (one writer per job), every view answers
    for every job, and when one replica leaves the other takes its partitions over."""
    settings = settings_for(broker, uuid.uuid4().hex[:8])
    await ensure_topics(settings)
    producer = make_producer(settings, "status-test")
    await producer.start()
    jobs = [f"two-{i:02d}" for i in range(40)]
    try:
        async with ingest(settings) as one:
            async with ingest(settings) as two:
                for state in PATH[:2]:
                    await send_status(producer, settings, *(transition(j, state) for j in jobs))

                async def both_accepted() -> bool:
                    return all(
                        [
                            await state_of(v, j) == JobState.ACCEPTED
                            for v in (one, two)
                            for j in jobs
                        ]
                    )

                await until(both_accepted)
            # Replica two has left: one folds every partition now.
            await send_status(producer, settings, *(transition(j, JobState.READY) for j in jobs))

            async def all_ready() -> bool:
                return all([await state_of(one, j) == JobState.READY for j in jobs])

            await until(all_ready)
    finally:
        await producer.stop()
    records = await asyncio.to_thread(read_topic, broker.bootstrap_servers, settings.topic(JOBS))
    per_job = Counter(r.key.decode() for r in records if r.key)
    assert per_job == {j: len(PATH) for j in jobs}  # one record per transition, no repeats


async def test_a_replica_given_back_partitions_folds_on_what_the_other_wrote_meanwhile(
    broker: EmbeddedBroker,
) -> None:
    """Replica one folds every job, hands half the partitions to replica two for a while
    (two folds the next transition of those jobs), then takes them back: what one remembers
    of those jobs is out of date, and folding on it would lose two's transition."""
    settings = settings_for(broker, uuid.uuid4().hex[:8])
    await ensure_topics(settings)
    producer = make_producer(settings, "status-test")
    await producer.start()
    jobs = [f"back-{i:02d}" for i in range(40)]

    def in_state(
        views: tuple[StatusView, ...], state: JobState.ValueType
    ) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return all([await state_of(v, j) == state for v in views for j in jobs])

        return check

    try:
        async with ingest(settings) as one:
            await send_status(
                producer, settings, *(transition(j, JobState.SUBMITTED) for j in jobs)
            )
            await until(in_state((one,), JobState.SUBMITTED))
            async with ingest_replica(settings) as (two, two_folder):

                async def two_folds_some() -> bool:
                    return bool(two_folder.partitions)

                await until(two_folds_some)
                await send_status(
                    producer, settings, *(transition(j, JobState.ACCEPTED) for j in jobs)
                )
                await until(in_state((one, two), JobState.ACCEPTED))
            await send_status(producer, settings, *(transition(j, JobState.READY) for j in jobs))
            await until(in_state((one,), JobState.READY))
            for j in jobs:
                got = await one.get(j)
                assert got is not None and [h.state for h in got.history] == list(PATH), j
    finally:
        await producer.stop()


async def test_a_lookup_keeps_the_newest_view_when_an_older_one_is_written_after_it(
    broker: EmbeddedBroker,
) -> None:
    """A replica that lost its partitions may write a view late, after the new owner's:
    the lookup goes by the status offset each view folds, not by which came last."""
    settings = settings_for(broker, uuid.uuid4().hex[:8])
    await ensure_topics(settings)
    producer = make_producer(settings, "jobs-test")
    await producer.start()
    lookup = JobStateLookup(settings, IngestSettings(), client_id="lookup-test")
    await lookup.start()
    try:
        for offset, state in ((5, JobState.READY), (4, JobState.ACCEPTED)):
            view = JobView(job_id="late", state=state)
            await producer.send_and_wait(
                settings.topic(JOBS),
                view.SerializeToString(),
                key=b"late",
                headers=[(STATUS_OFFSET, str(offset).encode())],
            )
        found, offset = await lookup.find("late")
        assert isinstance(found, JobView) and (found.state, offset) == (JobState.READY, 5)
        await producer.send_and_wait(settings.topic(JOBS), None, key=b"late")
        assert (await lookup.find("late"))[0] is ERASED
    finally:
        await lookup.stop()
        await producer.stop()


class _HeldProducer:
    """A producer whose sends are acknowledged only when the test says so."""

    def __init__(self) -> None:
        self.acks: list[asyncio.Future[None]] = []
        self.sent = asyncio.Event()

    async def send(self, *args: object, **kwargs: object) -> asyncio.Future[None]:
        self.acks.append(asyncio.get_running_loop().create_future())
        self.sent.set()
        return self.acks[-1]


async def test_a_handover_completes_only_once_the_views_sent_have_landed() -> None:
    """Partitions taken away in the middle of a batch: the handover (which the next owner
    waits for) returns only after the views already sent are acknowledged, so none of them
    can land after the next owner's view of the same job and stand as its last."""
    producer = _HeldProducer()

    async def nothing() -> None:
        return None

    folder = JobStateFolder(
        ServiceSettings(),
        IngestSettings(),
        producer,  # acknowledges on demand
        None,  # type: ignore[arg-type]  # new jobs only: nothing to look up
        lambda job_id: False,
        nothing,
    )
    event = transition("job-1", JobState.SUBMITTED)
    record = SimpleNamespace(value=event.SerializeToString(), partition=0, offset=7)
    folding = asyncio.create_task(folder.fold_records([record]))
    await producer.sent.wait()
    handover = asyncio.create_task(folder.hand_over({0}))
    await asyncio.sleep(0.1)
    assert not handover.done() and not folding.done()
    producer.acks[0].set_result(None)
    await asyncio.wait_for(handover, 5)
    await asyncio.wait_for(folding, 5)
