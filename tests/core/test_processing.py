"""What happens to one event, in process (alive/processing.py through the stage harness):
decoding, job identity, the ledger, retries, and the messages each outcome makes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzzing
from hypothesis import strategies as st

from alive.blobs import LocalBlobStore, StageLedger, output_key
from alive.jobs import video_prefix
from alive.pipeline import (
    ACCEPTED,
    AUDIO,
    GENERATED,
    GENERATOR,
    INGEST,
    PHOTO_CLEARED,
    PIPELINE,
    PROVENANCE,
    SCORED,
    StageSpec,
)
from alive.processing import (
    DLQ_JOB_ID,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_PAYLOAD_ERROR,
    DLQ_PAYLOAD_REF,
    DLQ_PAYLOAD_SHA256,
    DLQ_STAGE,
    DLQ_TOPIC,
    Record,
    RetryPolicy,
    dead_letter,
)
from alive.reasons import Finding, ReasonCode
from alive.settings import StageSettings
from alive.stage import (
    Cancelled,
    JobIdentity,
    PermanentError,
    Stage,
    StageContext,
    TransientError,
    Veto,
)
from alive.v1.events_pb2 import BlobRef, Job, JobState, StageOutcome, Verdict
from alive_tools.testing import StageHarness

ECHO = StageSpec("echo", "tests.core", ACCEPTED, PHOTO_CLEARED, JobState.PHOTO_CLEARED, "test")


class EchoStage(Stage[Job, StageSettings]):
    """Does what the prompt says: 'transient N' fails N times, 'crash', 'permanent', 'veto',
    'cancel me' (cancels its own job, then notices), 'io N' (an I/O error N times)."""

    spec = ECHO

    def __init__(self, settings: StageSettings, blobs: LocalBlobStore) -> None:
        super().__init__(settings, blobs)
        self.calls = 0

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        self.calls += 1
        verb, _, arg = event.prompt.partition(" ")
        if verb == "transient" and self.calls <= int(arg):
            raise TransientError("down")
        if verb == "io" and self.calls <= int(arg):
            raise OSError(5, "Input/output error")  # the store, failing for a while
        if verb == "crash":
            raise KeyError("bug")
        if verb == "cancel":
            StageLedger(self.blobs).mark_cancelled(event.job_id)
            if ctx.cancelled():
                raise Cancelled("noticed")
        if verb == "permanent":
            raise PermanentError(ReasonCode.MODEL_BAD_OUTPUT, "cannot")
        if verb == "veto":
            ctx.scores["seen"] = 1.0
            return Veto(
                (
                    Finding(ReasonCode.VIDEO_NO_AUDIO, "no audio"),
                    Finding(ReasonCode.VIDEO_SIZE_MISMATCH, "8x8"),
                ),
                {"size": 8.0},
            )
        return event


@pytest.fixture
def harness(tmp_path: Path) -> StageHarness:
    settings = StageSettings(max_attempts=3, retry_base_s=1.0, retry_max_s=1.5)
    return StageHarness(EchoStage(settings, LocalBlobStore(tmp_path)))


async def test_a_pass_emits_the_job_with_its_stage_record_and_a_status(
    harness: StageHarness,
) -> None:
    out = await harness.send(Job(job_id="j1", request_id="r1", creator_id="c1", prompt="hi"))
    assert [j.job_id for j in out.jobs] == ["j1"]
    assert [(r.stage, r.verdict) for r in out.jobs[0].stages] == [("echo", Verdict.PASS)]
    (status,) = out.statuses
    assert (status.state, status.stage, status.creator_id) == (JobState.PHOTO_CLEARED, "echo", "c1")
    assert not out.vetoes and not out.dead_letters


async def test_a_veto_names_every_finding_and_keeps_the_scores(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="j2", prompt="veto"))
    assert not out.jobs
    (veto,) = out.vetoes
    assert list(veto.reason_codes) == ["VIDEO_NO_AUDIO", "VIDEO_SIZE_MISMATCH"]
    assert dict(veto.scores) == {"seen": 1.0, "size": 8.0}
    assert veto.detail == "no audio; 8x8"
    (status,) = out.statuses
    assert status.state == JobState.VETOED and status.verdict == Verdict.VETO


async def test_transient_errors_back_off_then_pass(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="j3", prompt="transient 2"))
    assert out.statuses[0].state == JobState.PHOTO_CLEARED
    assert len(harness.retry_delays) == 2
    assert 0.5 <= harness.retry_delays[0] <= 1.0 and 0.75 <= harness.retry_delays[1] <= 1.5


async def test_retries_exhausted_fails_the_job(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="j4", prompt="transient 9"))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.RETRIES_EXHAUSTED]
    assert out.statuses[0].state == JobState.FAILED
    assert out.dead_letters[0].reason_code == ReasonCode.RETRIES_EXHAUSTED


async def test_an_unexpected_exception_is_a_stage_error_not_a_crash(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="j5", prompt="crash"))
    assert out.statuses[0].state == JobState.FAILED
    assert out.dead_letters[0].reason_code == ReasonCode.STAGE_ERROR
    assert out.dead_letters[0].headers[DLQ_JOB_ID] == b"j5"
    assert "KeyError" in out.statuses[0].detail


async def test_a_permanent_error_keeps_its_own_code(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="j6", prompt="permanent"))
    assert list(out.statuses[0].reason_codes) == [ReasonCode.MODEL_BAD_OUTPUT]


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (b"\xff\xff not protobuf", ReasonCode.UNDECODABLE_EVENT),
        (Job(prompt="no id").SerializeToString(), ReasonCode.EVENT_WITHOUT_JOB_ID),
        (Job(job_id="../escape").SerializeToString(), ReasonCode.INVALID_JOB_ID),
    ],
)
async def test_events_naming_no_usable_job_are_dead_lettered_without_a_status(
    harness: StageHarness, value: bytes, code: ReasonCode
) -> None:
    out = await harness.send(value, key=b"k")
    assert [d.reason_code for d in out.dead_letters] == [code]
    (letter,) = out.dead_letters
    assert letter.value is None and letter.key == b"k"  # the value only by reference
    ref = BlobRef(uri=letter.headers[DLQ_PAYLOAD_REF].decode())
    assert harness.stage.blobs.get_bytes(ref) == value
    assert DLQ_JOB_ID not in letter.headers
    assert not out.statuses and not out.jobs


async def test_a_finished_job_is_not_processed_again(harness: StageHarness) -> None:
    job = Job(job_id="j7", prompt="veto")
    await harness.send(job)
    again = await harness.send(job)
    assert not again.statuses and not again.vetoes
    assert isinstance(harness.stage, EchoStage) and harness.stage.calls == 1


def test_retry_delays_double_up_to_the_cap_with_jitter_in_the_upper_half() -> None:
    policy = RetryPolicy(max_attempts=6, base_s=0.5, max_s=3.0)
    assert [policy.delay_s(a, 0.999999) for a in (1, 2, 3, 4)] == pytest.approx([0.5, 1, 2, 3])
    assert [policy.delay_s(a, 0.0) for a in (1, 2, 3, 4)] == [0.25, 0.5, 1.0, 1.5]


def test_a_dead_letter_is_a_reference_with_why_and_never_the_value() -> None:
    record = Record("t", 2, 7, b"k", b"v", (("traceparent", b"x"), (DLQ_STAGE, b"older")))
    finding = Finding(ReasonCode.STAGE_ERROR, "e" * 2000)
    out = dead_letter(record, "dlq", "echo", finding, "j", "file:///b", "ab12")
    headers = dict(out.headers)
    assert headers[DLQ_STAGE] == b"echo" and "traceparent" not in headers
    assert (headers[DLQ_PAYLOAD_REF], headers[DLQ_PAYLOAD_SHA256]) == (b"file:///b", b"ab12")
    assert (headers[DLQ_TOPIC], headers[DLQ_PARTITION], headers[DLQ_OFFSET]) == (b"t", b"2", b"7")
    assert len(headers["alive-dlq-error"]) == 1000
    assert [k for k, _ in out.headers].count(DLQ_STAGE) == 1
    assert (out.topic, out.key, out.value) == ("dlq", b"k", None)


# No record stops a stage: hostile records are dead-lettered or fail their job, never raise.

HOSTILE_JOB_IDS = ["job\x00id", "j" * 300, "../../etc", ".hidden", "a/b", "ünïcode", " pad"]


@pytest.mark.parametrize("job_id", HOSTILE_JOB_IDS)
async def test_hostile_job_ids_are_dead_lettered(harness: StageHarness, job_id: str) -> None:
    out = await harness.send(Job(job_id=job_id, prompt="hi"))
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.INVALID_JOB_ID]
    assert not out.statuses


async def test_a_record_too_big_to_dead_letter_whole_is_kept_by_reference(
    harness: StageHarness,
) -> None:
    value = b"\xff" * (2 * 1024 * 1024)
    (letter,) = (await harness.send(value, key=b"big")).dead_letters
    assert letter.value is None and letter.reason_code == ReasonCode.UNDECODABLE_EVENT
    ref = BlobRef(uri=letter.headers[DLQ_PAYLOAD_REF].decode())
    assert harness.stage.blobs.get_bytes(ref) == value


async def test_an_output_too_big_for_kafka_fails_its_job_and_nothing_else(
    harness: StageHarness,
) -> None:
    out = await harness.send(Job(job_id="huge", prompt="x" * (2 * 1024 * 1024)))
    assert not out.jobs
    assert [s.state for s in out.statuses] == [JobState.FAILED]
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.OUTPUT_TOO_LARGE]
    assert out.dead_letters[0].headers.get(DLQ_PAYLOAD_REF)  # the input was big too
    assert (await harness.send(Job(job_id="next", prompt="hi"))).jobs


async def test_an_error_while_identifying_is_the_records_failure(tmp_path: Path) -> None:
    class Fragile(EchoStage):
        def identify(self, event: Job) -> JobIdentity:
            raise RecursionError("deep")

    harness = StageHarness(Fragile(StageSettings(), LocalBlobStore(tmp_path)))
    out = await harness.send(Job(job_id="j8"))
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.UNPROCESSABLE_EVENT]
    assert "RecursionError" in out.dead_letters[0].headers["alive-dlq-error"].decode()


async def test_a_ledger_record_the_store_refuses_dead_letters_the_record(
    harness: StageHarness, tmp_path: Path
) -> None:
    (harness.stage.blobs.root / "ledger" / "echo").mkdir(parents=True)
    (harness.stage.blobs.root / "ledger" / "echo" / "j9").symlink_to(tmp_path / "planted")
    out = await harness.send(Job(job_id="j9"))
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.UNPROCESSABLE_EVENT]
    assert not out.statuses


class FlakyStore(LocalBlobStore):
    """A local store whose ledger calls fail with an I/O error while ``failures`` lasts."""

    failures = 0

    def read_key(self, key: str) -> bytes | None:
        self._fail()
        return super().read_key(key)

    def create_key(self, key: str, data: bytes) -> bool:
        self._fail()
        return super().create_key(key, data)

    def _fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise OSError(5, "Input/output error")


async def test_ledger_io_errors_are_retried_and_if_they_last_nothing_is_decided(
    tmp_path: Path,
) -> None:
    store = FlakyStore(tmp_path)
    harness = StageHarness(EchoStage(StageSettings(max_attempts=3), store))
    store.failures = 2  # the first lookup, twice
    out = await harness.send(Job(job_id="f1", prompt="hi"))
    assert [s.state for s in out.statuses] == [JobState.PHOTO_CLEARED]
    assert len(harness.retry_delays) == 2
    store.failures = 99  # down for good: the event stays uncommitted, to be redelivered
    with pytest.raises(OSError):
        await harness.send(Job(job_id="f2", prompt="hi"))
    assert len(harness.retry_delays) == 4
    assert not (harness.emitted.dead_letters or harness.emitted.statuses[1:])
    store.failures = 0
    redelivered = await harness.send(Job(job_id="f2", prompt="hi"))
    assert [s.state for s in redelivered.statuses] == [JobState.PHOTO_CLEARED]


class Unavailable:
    """A sink standing for a Kafka that refuses everything."""

    async def send(self, records: object) -> None:
        raise KafkaConnectionError("broker unavailable")


@pytest.mark.parametrize("prompt", ["hi", "veto", "permanent"])
async def test_a_decision_recorded_but_not_sent_is_sent_when_the_event_comes_again(
    harness: StageHarness, prompt: str
) -> None:
    """The process dies (here: Kafka refuses) between recording a decision and sending it;
    the redelivered event sends the recorded events, without processing the job again."""
    job = Job(job_id="crash-1", creator_id="c1", prompt=prompt)
    sink, harness.processor.sink = harness.processor.sink, Unavailable()
    with pytest.raises(KafkaConnectionError):
        await harness.send(job)
    recorded = StageOutcome.FromString(harness.ledger.get("echo", "crash-1") or b"")
    assert not harness.ledger.was_sent("echo", "crash-1")
    harness.processor.sink = sink
    resent = await harness.send(job)
    assert isinstance(harness.stage, EchoStage) and harness.stage.calls == 1
    assert resent.statuses == [recorded.status]
    if prompt == "hi":
        assert resent.jobs == [recorded.passed]
    elif prompt == "veto":
        assert resent.vetoes == [recorded.vetoed]
    else:
        assert [d.reason_code for d in resent.dead_letters] == [recorded.failed_reason_code]
    assert harness.ledger.was_sent("echo", "crash-1")
    assert harness.metrics.events_out.labels("echo", "resent")._value.get() == 1
    again = await harness.send(job)  # sent and marked: a duplicate now
    assert not (again.statuses or again.jobs or again.vetoes or again.dead_letters)


async def test_a_decision_never_sent_stays_unsent_once_the_job_is_cancelled(
    harness: StageHarness,
) -> None:
    job = Job(job_id="crash-2", prompt="hi")
    sink, harness.processor.sink = harness.processor.sink, Unavailable()
    with pytest.raises(KafkaConnectionError):
        await harness.send(job)
    harness.processor.sink = sink
    harness.ledger.mark_cancelled("crash-2")
    out = await harness.send(job)
    assert not (out.statuses or out.jobs)
    assert harness.metrics.events_out.labels("echo", "cancelled")._value.get() == 1


@fuzzing(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.builds(
            lambda job_id, prompt, request_id: Job(
                job_id=job_id, prompt=prompt, request_id=request_id
            ).SerializeToString(),
            st.text(max_size=300),
            st.text(max_size=300),
            st.text(max_size=50),
        ),
    )
)
async def test_fuzz_every_record_ends_in_exactly_one_outcome(value: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        harness = StageHarness(EchoStage(StageSettings(), LocalBlobStore(Path(folder))))
        out = await harness.send(value, key=b"fuzz")
        assert len(out.dead_letters) + len(out.statuses) == 1
        after = await harness.send(Job(job_id="valid-after-fuzz", prompt="hi"))
        assert after.jobs


async def test_a_job_cancelled_while_processed_ends_with_nothing_sent(
    harness: StageHarness,
) -> None:
    out = await harness.send(Job(job_id="c1", prompt="cancel me"))
    assert not (out.jobs or out.statuses or out.vetoes or out.dead_letters)
    assert harness.metrics.events_out.labels("echo", "cancelled")._value.get() == 1
    again = await harness.send(Job(job_id="c1", prompt="hi"))  # redelivered: skipped
    assert not again.statuses


async def test_an_io_error_is_retried_like_a_transient_one(harness: StageHarness) -> None:
    out = await harness.send(Job(job_id="io1", prompt="io 2"))
    assert len(harness.retry_delays) == 2 and out.statuses[0].state == JobState.PHOTO_CLEARED
    failed = await harness.send(Job(job_id="io2", prompt="io 99"))
    assert [d.reason_code for d in failed.dead_letters] == [ReasonCode.RETRIES_EXHAUSTED]


# Minimal data: no prompt in the ledger, none after the last stage that reads it, none in the
# dead-letter topic; an erased job is never worked on again.


def test_the_prompt_goes_on_only_while_a_later_stage_reads_it() -> None:
    assert PIPELINE.prompt_read_after(INGEST) and PIPELINE.prompt_read_after(GENERATOR)
    assert not PIPELINE.prompt_read_after(AUDIO) and not PIPELINE.prompt_read_after(PROVENANCE)


async def test_the_ledger_keeps_the_job_without_its_prompt(harness: StageHarness) -> None:
    prompt_ref = BlobRef(uri="file:///p", sha256="00" * 32)
    out = await harness.send(Job(job_id="m1", prompt="a secret wish", prompt_ref=prompt_ref))
    assert out.jobs[0].prompt == "a secret wish"  # a later stage (moderation-prompt) reads it
    record = harness.ledger.get("echo", "m1")
    assert record is not None and b"a secret wish" not in record
    assert StageOutcome.FromString(record).passed.prompt_ref == prompt_ref


LAST_READER = StageSpec("last", "tests.core", GENERATED, SCORED, JobState.SCORED, "test")


async def test_after_the_last_stage_that_reads_it_the_job_goes_on_without_its_prompt(
    tmp_path: Path,
) -> None:
    class Last(EchoStage):
        spec = LAST_READER

    harness = StageHarness(Last(StageSettings(), LocalBlobStore(tmp_path)))
    (job,) = (await harness.send(Job(job_id="m2", prompt="a secret wish"))).jobs
    assert job.prompt == "" and job.job_id == "m2"


async def test_a_stage_that_reads_the_prompt_refuses_a_job_without_one(tmp_path: Path) -> None:
    class Reader(EchoStage):
        spec = StageSpec(
            "reader",
            "tests.core",
            ACCEPTED,
            PHOTO_CLEARED,
            JobState.PHOTO_CLEARED,
            "test",
            reads_prompt=True,
        )

    harness = StageHarness(Reader(StageSettings(), LocalBlobStore(tmp_path)))
    out = await harness.send(Job(job_id="m3", prompt_ref=BlobRef(sha256="00" * 32)))
    assert [v.reason_codes for v in out.vetoes] == [[ReasonCode.ATTESTATION_INVALID]]
    assert isinstance(harness.stage, EchoStage) and harness.stage.calls == 0


async def test_a_dead_letter_keeps_the_job_in_the_store_under_the_job(
    harness: StageHarness,
) -> None:
    job = Job(job_id="m4", prompt="crash with a secret wish")
    (letter,) = (await harness.send(job)).dead_letters
    assert letter.value is None and letter.headers[DLQ_JOB_ID] == b"m4"
    uri = letter.headers[DLQ_PAYLOAD_REF].decode()
    key = harness.stage.blobs.key_for(uri)
    assert key is not None and key.startswith("dlq/m4/echo-")
    ref = BlobRef(uri=uri, sha256=letter.headers[DLQ_PAYLOAD_SHA256].decode())
    assert Job.FromString(harness.stage.blobs.get_bytes(ref)) == job  # what a replay sends


async def test_a_dead_letter_the_store_cannot_keep_still_names_the_record(
    harness: StageHarness,
) -> None:
    (harness.stage.blobs.root / "dlq").write_text("not a folder")
    (letter,) = (await harness.send(Job(job_id="m5", prompt="crash"))).dead_letters
    assert DLQ_PAYLOAD_REF not in letter.headers and letter.headers[DLQ_PAYLOAD_ERROR]
    assert letter.headers[DLQ_OFFSET] and letter.value is None


async def test_an_erased_job_is_never_worked_on_again(harness: StageHarness) -> None:
    await harness.send(Job(job_id="m6", prompt="hi"))
    harness.ledger.mark_erased("m6", b"{}")
    harness.stage.blobs.delete_key("ledger/echo/m6")  # as the erasure deletes it
    again = await harness.send(Job(job_id="m6", prompt="hi"))  # a replay of old events
    assert not (again.jobs or again.statuses or again.vetoes or again.dead_letters)
    assert harness.metrics.events_out.labels("echo", "erased")._value.get() == 1
    assert harness.ledger.get("echo", "m6") is None


async def test_a_job_erased_while_processed_leaves_nothing_it_made(tmp_path: Path) -> None:
    class Maker(EchoStage):
        async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
            self.blobs.put_bytes(output_key(video_prefix(event.job_id, "x"), ".mp4"), b"v", "v")
            StageLedger(self.blobs).mark_erased(event.job_id, b"{}")  # meanwhile, an erasure
            return event

    harness = StageHarness(Maker(StageSettings(), LocalBlobStore(tmp_path)))
    out = await harness.send(Job(job_id="m7", prompt="hi"))
    assert not (out.jobs or out.statuses or out.dead_letters)
    assert harness.stage.blobs.keys_under("videos/m7/") == []
    assert harness.ledger.get("echo", "m7") is None
