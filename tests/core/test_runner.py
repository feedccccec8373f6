"""The stage runner on a real broker, with a toy stage whose behaviour each job's prompt sets."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from alive import runner as runner_module
from alive.attestation import Keyring
from alive.blobs import LocalBlobStore, StageLedger
from alive.kafka import ensure_topics, make_consumer, make_producer
from alive.locks import KeyedLocks
from alive.pipeline import (
    ACCEPTED,
    DLQ,
    PHOTO_CLEARED,
    PIPELINE,
    STATUS,
    VETOES,
    StageSpec,
    Topic,
)
from alive.processing import DLQ_JOB_ID, DLQ_PAYLOAD_REF, DLQ_REASON
from alive.runner import OffsetTracker, StageRunner
from alive.settings import ServiceSettings, StageSettings
from alive.stage import CancelToken, PermanentError, Stage, StageContext, TransientError, Veto
from alive.telemetry import StageMetrics
from alive.v1.events_pb2 import Job, JobState, StatusEvent, Verdict, VetoEvent
from alive_tools.embedded.broker import EmbeddedBroker
from tests.support import read_topic


def test_offset_tracker_commits_only_a_finished_prefix() -> None:
    tracker, tp = OffsetTracker(), TopicPartition("t", 0)
    for offset in (10, 11, 12, 13):
        tracker.begin(tp, offset)
    tracker.finish(tp, 12)
    tracker.finish(tp, 11)
    assert tracker.take_committable() == {}  # 10 still running
    tracker.finish(tp, 10)
    assert tracker.take_committable() == {tp: 13}  # 10, 11, 12 done: next is 13
    assert tracker.uncommitted() == 1
    tracker.finish(tp, 13)
    assert tracker.take_committable() == {tp: 14}
    assert tracker.take_committable() == {}


def test_offset_tracker_knows_the_commit_point_and_the_oldest_waiting_record() -> None:
    """What the lag gauges are made of: the commit point a partition will reach and the
    Kafka timestamp of its oldest unfinished record."""
    tracker, tp = OffsetTracker(), TopicPartition("t", 0)
    assert tracker.commit_point(tp) is None and tracker.oldest_timestamp_ms(tp) is None
    tracker.begin(tp, 5, timestamp_ms=1_000)
    tracker.begin(tp, 6, timestamp_ms=2_000)
    assert tracker.commit_point(tp) == 5
    assert tracker.oldest_timestamp_ms(tp) == 1_000
    tracker.finish(tp, 6)  # out of order: 5 still holds the commit point
    assert (tracker.commit_point(tp), tracker.oldest_timestamp_ms(tp)) == (5, 1_000)
    tracker.finish(tp, 5)
    assert tracker.commit_point(tp) == 7  # everything taken is finished: the next offset
    assert tracker.oldest_timestamp_ms(tp) is None
    tracker.forget(tp)
    assert tracker.commit_point(tp) is None


async def test_keyed_locks_serialise_one_key_and_forget_idle_keys() -> None:
    locks, order = KeyedLocks(), []

    async def work(key: bytes, label: str) -> None:
        async with locks.hold(key):
            order.append(f"{label}+")
            await asyncio.sleep(0.01)
            order.append(f"{label}-")

    await asyncio.gather(work(b"a", "a1"), work(b"a", "a2"), work(b"b", "b1"))
    assert order.index("a1-") < order.index("a2+")
    assert len(locks) == 0


class ToyStage(Stage[Job, StageSettings]):
    """Behaviour from the prompt: 'sleep N', 'steps N' (N steps of 20 ms in a thread, checking
    the cancel token between them), 'transient N' (fails N times), 'permanent', 'crash',
    'veto', 'huge' (an output over Kafka's size limit); anything else passes."""

    spec = StageSpec("toy", "tests.core", ACCEPTED, PHOTO_CLEARED, JobState.PHOTO_CLEARED, "toy")

    def __init__(self, settings: StageSettings, blobs: LocalBlobStore) -> None:
        super().__init__(settings, blobs)
        self.calls: dict[str, int] = {}
        self.steps: dict[str, int] = {}  # per job: steps its thread took
        self.threads_done: set[str] = set()  # jobs whose thread work returned or raised

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        self.calls[event.job_id] = self.calls.get(event.job_id, 0) + 1
        verb, _, arg = event.prompt.partition(" ")
        if verb == "sleep":
            await asyncio.sleep(float(arg))
        elif verb == "steps":
            await asyncio.to_thread(self._steps, event.job_id, int(arg), ctx.cancel_token)
        elif verb == "transient" and self.calls[event.job_id] <= int(arg):
            raise TransientError("not yet")
        elif verb == "permanent":
            raise PermanentError("TOY_BROKEN", "cannot")  # a toy code, not one of Alive's
        elif verb == "crash":
            raise ZeroDivisionError("bug")
        elif verb == "veto":
            ctx.scores["measured"] = 0.5
            return Veto.of("TOY_SAYS_NO", "no", {"toy_score": 0.9})  # likewise
        elif verb == "huge":
            event.prompt = "x" * (2 * 1024 * 1024)
        return event

    def _steps(self, job_id: str, count: int, token: CancelToken) -> None:
        try:
            for _ in range(count):
                token.check()
                time.sleep(0.02)
                self.steps[job_id] = self.steps.get(job_id, 0) + 1
        finally:
            self.threads_done.add(job_id)


@dataclass
class ToyRig:
    """A ToyStage running in a StageRunner on its own topics."""

    stage: ToyStage
    settings: ServiceSettings
    runner: StageRunner

    def topic(self, topic: Topic[Any]) -> str:
        return self.settings.topic(topic)

    async def send(self, jobs: list[Job]) -> None:
        producer = make_producer(self.settings, "toy-feeder")
        await producer.start()
        for job in jobs:
            await producer.send_and_wait(
                self.topic(ACCEPTED), job.SerializeToString(), key=job.job_id.encode()
            )
        await producer.stop()

    async def send_raw(self, records: list[tuple[bytes, bytes]]) -> None:
        """(key, value) pairs as any client could produce them, up to 8 MiB each."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka.bootstrap_servers,
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        for key, value in records:
            await producer.send_and_wait(self.topic(ACCEPTED), value, key=key)
        await producer.stop()

    async def read(self, topic: str) -> list[ConsumerRecord]:
        return await asyncio.to_thread(read_topic, self.settings.kafka.bootstrap_servers, topic)

    async def statuses(self, count: int) -> list[StatusEvent]:
        for _ in range(100):
            records = await self.read(self.topic(STATUS))
            if len(records) >= count:
                return [StatusEvent.FromString(r.value) for r in records]
            await asyncio.sleep(0.1)
        raise AssertionError(f"fewer than {count} status events")

    async def committed(self) -> int:
        consumer = make_consumer(self.settings, group_id="alive-toy", client_id="probe")
        await consumer.start()
        try:
            parts = [TopicPartition(self.topic(ACCEPTED), p) for p in range(3)]
            return sum([(await consumer.committed(tp)) or 0 for tp in parts])
        finally:
            await consumer.stop()


@pytest.fixture
async def toy(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[ToyRig]:
    suffix = uuid.uuid4().hex[:8]
    settings = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        topics={t.key: f"{t.default_name}-{suffix}" for t in PIPELINE.topics()},
        blob_url=str(tmp_path),
        shutdown_grace_s=5,
    )
    await ensure_topics(settings)
    blobs = LocalBlobStore(tmp_path)
    stage = ToyStage(StageSettings(max_in_flight=3, retry_base_s=0.01, max_attempts=4), blobs)
    producer = make_producer(settings, "toy-test")
    await producer.start()
    runner = StageRunner(
        stage,
        settings,
        producer,
        StageLedger(blobs),
        StageMetrics("toy", CollectorRegistry()),
        Keyring(None),  # the toy stage attests nothing and requires nothing
    )
    task = asyncio.create_task(runner.run())
    yield ToyRig(stage, settings, runner)
    runner.stop()
    await asyncio.wait_for(task, 20)
    await producer.stop()


async def test_out_of_order_work_is_all_committed_and_emitted(toy: ToyRig) -> None:
    jobs = [
        Job(job_id=f"job-{i}", prompt=f"sleep {0.3 if i % 3 == 0 else 0.01}") for i in range(12)
    ]
    await toy.send(jobs)
    events = await toy.statuses(12)
    assert {e.job_id for e in events} == {j.job_id for j in jobs}
    assert all(e.state == JobState.PHOTO_CLEARED for e in events)
    await asyncio.sleep(0.5)
    assert await toy.committed() == 12
    out = await toy.read(toy.topic(PHOTO_CLEARED))
    assert sorted(Job.FromString(r.value).job_id for r in out) == sorted(j.job_id for j in jobs)
    stages = Job.FromString(out[0].value).stages
    assert [s.stage for s in stages] == ["toy"] and stages[0].verdict == Verdict.PASS


async def test_work_longer_than_the_session_keeps_the_partitions(
    toy: ToyRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three jobs of 4 s each fill the stage (max 3 in flight: its partitions are paused)
    with two more waiting behind them, on a broker whose session times out after 1 s: the
    consumer keeps polling, so it is never evicted, nothing is revoked, and every job is
    processed once (a long generation on the generator is the same case)."""
    revoked: list[set[TopicPartition]] = []
    on_revoked = toy.runner.on_revoked

    async def recording(partitions: set[TopicPartition]) -> None:
        revoked.append(partitions)
        await on_revoked(partitions)

    monkeypatch.setattr(toy.runner, "on_revoked", recording)
    slow = [Job(job_id=f"slow-{i}", prompt="sleep 4") for i in range(3)]
    quick = [Job(job_id=f"quick-{i}", prompt="pass") for i in range(2)]
    await toy.send(slow + quick)
    events = await toy.statuses(5)
    assert sorted(e.job_id for e in events) == sorted(j.job_id for j in slow + quick)
    assert not any(revoked)  # (the group's first join revokes an empty set)
    assert all(calls == 1 for calls in toy.stage.calls.values())


async def test_a_full_stage_takes_the_next_record_when_a_slot_frees(
    toy: ToyRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nine short jobs through three slots: whenever the stage is full, the next record is
    taken as soon as an event finishes. With polls of 5 s, a stage that waited out its poll
    while full would take at least two of them (the jobs come in three waves)."""
    monkeypatch.setattr(runner_module, "POLL_MS", 5000)
    jobs = [Job(job_id=f"short-{i}", prompt="sleep 0.05") for i in range(9)]
    started = time.monotonic()
    await toy.send(jobs)
    events = await toy.statuses(9)
    assert sorted(e.job_id for e in events) == sorted(j.job_id for j in jobs)
    assert time.monotonic() - started < 5


def _lag(toy: ToyRig, name: str) -> dict[str, float]:
    """The lag gauge ``name`` by partition, as the stage exports it."""
    return {
        sample.labels["partition"]: sample.value
        for metric in toy.runner.metrics.registry.collect()
        for sample in metric.samples
        if sample.name == name and sample.labels["group"] == "alive-toy"
    }


async def test_a_revoked_partition_stops_the_thread_work_of_its_events(toy: ToyRig) -> None:
    """A rebalance takes the partition while a job's work runs in a thread: after the grace
    the runner gives the event up (to be redelivered), and the thread stops at its next check
    instead of running on unseen beside the next owner."""
    job = Job(job_id="revoked-1", prompt="steps 1000")  # 20 s, unless stopped
    await toy.send([job])
    for _ in range(200):
        if toy.stage.steps.get(job.job_id):
            break
        await asyncio.sleep(0.05)
    partitions = {TopicPartition(toy.topic(ACCEPTED), p) for p in range(3)}
    await toy.runner.on_revoked(partitions)  # what the consumer calls in a rebalance
    for _ in range(40):
        if job.job_id in toy.stage.threads_done:
            break
        await asyncio.sleep(0.05)
    assert job.job_id in toy.stage.threads_done
    assert 0 < toy.stage.steps[job.job_id] < 1000
    assert StageLedger(toy.stage.blobs).get("toy", job.job_id) is None  # nothing decided


async def test_lag_counts_waiting_records_and_the_oldest_ones_age(
    toy: ToyRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner_module, "LAG_REFRESH_S", 0.2)  # ask the broker often
    for _ in range(100):  # the stage owns its partitions and has nothing to do
        if len(_lag(toy, "alive_consumer_lag_messages")) == 3:
            break
        await asyncio.sleep(0.1)
    assert _lag(toy, "alive_consumer_lag_messages") == {"0": 0, "1": 0, "2": 0}
    # 9 slow jobs, at most 3 in flight: 6 wait unfetched behind paused partitions.
    await toy.send([Job(job_id=f"slow-{i}", prompt="sleep 1.5") for i in range(9)])
    for _ in range(50):
        if sum(_lag(toy, "alive_consumer_lag_messages").values()) == 9:
            break
        await asyncio.sleep(0.1)
    assert sum(_lag(toy, "alive_consumer_lag_messages").values()) == 9
    await asyncio.sleep(0.5)
    ages, waiting = (
        _lag(toy, "alive_consumer_lag_seconds"),
        _lag(toy, "alive_consumer_lag_messages"),
    )
    assert max(ages.values()) >= 0.5  # the oldest in-flight job has waited that long
    # a partition whose records wait unfetched (paused) still shows they wait
    assert all(ages[p] > 0 for p, count in waiting.items() if count > 0)
    await toy.statuses(9)
    for _ in range(50):
        if sum(_lag(toy, "alive_consumer_lag_messages").values()) == 0:
            break
        await asyncio.sleep(0.1)
    assert sum(_lag(toy, "alive_consumer_lag_messages").values()) == 0
    assert set(_lag(toy, "alive_consumer_lag_seconds").values()) == {0.0}
    labels = {s.labels["topic"] for m in toy.runner.metrics.registry.collect() for s in m.samples
              if s.name == "alive_consumer_lag_messages"}  # fmt: skip
    assert labels == {toy.topic(ACCEPTED)}


async def test_transient_errors_are_retried_then_pass(toy: ToyRig) -> None:
    await toy.send([Job(job_id="flaky", prompt="transient 2")])
    events = await toy.statuses(1)
    assert events[0].state == JobState.PHOTO_CLEARED
    assert toy.stage.calls["flaky"] == 3


async def test_failures_are_dead_lettered_and_the_job_marked_failed(toy: ToyRig) -> None:
    await toy.send(
        [
            Job(job_id="../escape", prompt="pass"),
            Job(job_id="broken", prompt="permanent"),
            Job(job_id="buggy", prompt="crash"),
            Job(job_id="never", prompt="transient 99"),
            Job(job_id="refused", prompt="veto"),
        ]
    )
    events = {e.job_id: e for e in await toy.statuses(4)}
    assert events["broken"].state == JobState.FAILED
    assert list(events["broken"].reason_codes) == ["TOY_BROKEN"]
    assert list(events["buggy"].reason_codes) == ["STAGE_ERROR"]
    assert list(events["never"].reason_codes) == ["RETRIES_EXHAUSTED"]
    assert events["refused"].state == JobState.VETOED
    vetoes = await toy.read(toy.topic(VETOES))
    assert dict(VetoEvent.FromString(vetoes[0].value).scores) == {"toy_score": 0.9, "measured": 0.5}
    dlq = await toy.read(toy.topic(DLQ))
    invalid = [dict(r.headers) for r in dlq if r.key == b"../escape"]
    assert invalid and invalid[0][DLQ_REASON] == b"INVALID_JOB_ID"  # dead-lettered, no crash
    reasons = {
        dict(r.headers)[DLQ_JOB_ID]: dict(r.headers)[DLQ_REASON]
        for r in dlq
        if DLQ_JOB_ID in dict(r.headers)
    }
    assert reasons == {
        b"broken": b"TOY_BROKEN",
        b"buggy": b"STAGE_ERROR",
        b"never": b"RETRIES_EXHAUSTED",
    }


async def test_a_redelivered_job_is_not_processed_again(toy: ToyRig) -> None:
    await toy.send([Job(job_id="once", prompt="pass")] * 2)
    await toy.statuses(1)
    await asyncio.sleep(1.0)
    assert toy.stage.calls["once"] == 1
    assert len(await toy.read(toy.topic(STATUS))) == 1


async def test_no_record_stops_the_stage(toy: ToyRig) -> None:
    """Records that once crash-looped a service: each is dead-lettered or fails its job, and
    the stage goes on to the next valid job."""
    await toy.send_raw(
        [
            (b"nul", Job(job_id="job\x00id").SerializeToString()),
            (b"long", Job(job_id="j" * 300).SerializeToString()),
            (b"big", b"\xff" * (3 * 1024 * 1024)),
            (b"junk", b"\x08\x96\x01 definitely not protobuf \xff"),
        ]
    )
    await toy.send([Job(job_id="huge", prompt="huge"), Job(job_id="after", prompt="pass")])
    events = {e.job_id: e for e in await toy.statuses(2)}
    assert events["after"].state == JobState.PHOTO_CLEARED
    assert events["huge"].state == JobState.FAILED
    assert list(events["huge"].reason_codes) == ["OUTPUT_TOO_LARGE"]
    for _ in range(50):  # records on other partitions may still be on their way
        dlq = {r.key: dict(r.headers) for r in await toy.read(toy.topic(DLQ))}
        if len(dlq) >= 5:
            break
        await asyncio.sleep(0.2)
    assert {key: headers[DLQ_REASON] for key, headers in dlq.items()} == {
        b"nul": b"INVALID_JOB_ID",
        b"long": b"INVALID_JOB_ID",
        b"big": b"UNDECODABLE_EVENT",
        b"junk": b"UNDECODABLE_EVENT",
        b"huge": b"OUTPUT_TOO_LARGE",
    }
    assert DLQ_PAYLOAD_REF in dlq[b"big"]
    assert toy.runner.ready


_HOSTILE_RECORDS = st.lists(
    st.one_of(
        st.binary(max_size=4096),
        st.builds(
            # "fuzz ..." so that a prompt never asks the toy stage to sleep or crash.
            lambda job_id, prompt, creator: Job(
                job_id=job_id, prompt=f"fuzz {prompt}", creator_id=creator
            ).SerializeToString(),
            st.one_of(st.text(max_size=300), st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True)),
            st.text(max_size=200),
            st.text(max_size=200),
        ),
        # Valid wire format of another message type, and a Job with its bytes cut short.
        st.builds(lambda n: StatusEvent(job_id="x" * n).SerializeToString(), st.integers(0, 500)),
        st.builds(
            lambda n: Job(job_id="cut", prompt="p" * 50).SerializeToString()[:n], st.integers(1, 20)
        ),
    ),
    min_size=5,
    max_size=20,
)


@fuzzing(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=_HOSTILE_RECORDS)
async def test_fuzzed_records_on_the_broker_never_stop_the_stage(
    toy: ToyRig, values: list[bytes]
) -> None:
    """Random bytes, protobufs and hostile field values through the real runner and broker:
    the stage keeps running, each record is processed or dead-lettered, and the next valid
    job completes."""
    run = uuid.uuid4().hex[:8]
    keys = [f"{run}-{i}".encode() for i in range(len(values))]
    await toy.send_raw(list(zip(keys, values, strict=True)))
    await toy.send([Job(job_id=f"after-{run}", prompt="pass")])
    job_ids = [_job_id_of(value) for value in values]
    for _ in range(150):  # records on other partitions may still be on their way
        statuses = [StatusEvent.FromString(r.value) for r in await toy.read(toy.topic(STATUS))]
        handled = {s.job_id for s in statuses}
        dead = {r.key for r in await toy.read(toy.topic(DLQ))}
        unaccounted = [
            (key, value[:80])
            for key, value, job_id in zip(keys, values, job_ids, strict=True)
            if key not in dead and job_id not in handled
        ]
        if f"after-{run}" in handled and not unaccounted:
            break
        await asyncio.sleep(0.1)
    assert not unaccounted
    assert any(s.job_id == f"after-{run}" and s.state == JobState.PHOTO_CLEARED for s in statuses)
    assert toy.runner.ready


def _job_id_of(value: bytes) -> str | None:
    try:
        return Job.FromString(value).job_id
    except Exception:  # not a Job at all: it must be in the dead-letter topic
        return None
