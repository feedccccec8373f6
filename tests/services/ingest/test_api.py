"""Alive's gRPC API served in process (a real gRPC server over TLS and a producer on the test
broker), with a status view fed by hand: who may call, whose jobs they see, the caps on jobs
under way, and Cancel."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from prometheus_client import CollectorRegistry

from alive.blobs import REQUEST_RECORDS, BlobStore, LocalBlobStore, StageLedger
from alive.dependencies import BLOB_STORE, BROKER, TOPICS, BlobStoreProbe, DependencyMonitor
from alive.erasure import ErasedJob, Eraser, creator_job_ids, job_data_steps, record_job
from alive.kafka import BrokerProbes, ensure_topics, make_producer, stage_topics
from alive.pipeline import INGEST, JOBS, REVIEW_QUEUE, UNPUBLISHED
from alive.reasons import REPORT_REASONS, ReasonCode
from alive.settings import ServiceSettings
from alive.v1.api_pb2 import (
    CancelJobRequest,
    EraseRequest,
    GetJobRequest,
    PublishJobRequest,
    ReportRequest,
    SubmitRequest,
    WatchRequest,
)
from alive.v1.api_pb2_grpc import AliveStub
from alive.v1.events_pb2 import (
    ImagePromptRequest,
    Job,
    JobState,
    OutputSpec,
    StageOutcome,
    StatusEvent,
    Unpublished,
    UserReport,
)
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.embedded.ports import free_port
from alive_tools.keys import DEV_KID, ApiKeys, DevCa, ensure_api_keys, key_pem, mint_token
from services.ingest.api import (
    AliveApi,
    ApiServer,
    server_credentials,
    topic_tombstones,
    unpublish_erased,
)
from services.ingest.auth import CREATOR_CLAIM, CREATOR_SCOPES, Scope, TokenVerifier
from services.ingest.settings import IngestSettings
from services.ingest.stage import JobIds
from services.ingest.status_view import StatusView
from tests.support import photo_bytes, read_topic

POLICY = Path(__file__).resolve().parents[3] / "services" / "moderation" / "policy.yaml"


@dataclass
class Api:
    stub: AliveStub
    view: StatusView
    keys: ApiKeys
    ledger: StageLedger
    dependencies: DependencyMonitor
    settings: IngestSettings
    common: ServiceSettings
    broker: EmbeddedBroker
    blobs: LocalBlobStore
    bootstrap: str

    def as_(self, subject: str, scopes: tuple[str, ...] = CREATOR_SCOPES, **claims: str) -> Auth:
        token = mint_token(self.keys.issuer_key, subject, scopes, claims=claims)
        return (("authorization", f"Bearer {token}"),)


Auth = tuple[tuple[str, str], ...]


@contextlib.asynccontextmanager
async def serving(
    broker: EmbeddedBroker, folder: Path, blobs: BlobStore | None = None
) -> AsyncIterator[Api]:
    """An ingest replica's API: its own server, producer and status view (fed by hand), over
    the blob store in ``folder`` (or ``blobs``) and the keys in ``folder``."""
    common = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        blob_url=str(folder / "blobs"),
    )
    await ensure_topics(common)
    keys = ensure_api_keys(folder / "keys")
    settings = IngestSettings(
        grpc_port=0,
        max_jobs_in_flight=4,
        max_jobs_in_flight_per_creator=5,
        tls_cert_path=keys.tls_cert,
        tls_key_path=keys.tls_key,
        jwks_path=keys.jwks,
        job_id_key_path=keys.job_id_key,
    )
    view = StatusView(common, settings)
    producer = make_producer(common, "api-test")
    await producer.start()
    blobs = blobs or LocalBlobStore(Path(common.blob_url))
    ledger = StageLedger(blobs)
    # The probes a service runs, on the real broker and store; the tests probe when they want.
    dependencies = DependencyMonitor("ingest", CollectorRegistry())
    broker_probes = BrokerProbes(common, stage_topics(INGEST))
    blob_probe = BlobStoreProbe(blobs)
    dependencies.add(BROKER, broker_probes.broker)
    dependencies.add(TOPICS, broker_probes.topics)
    dependencies.add(BLOB_STORE, blob_probe)
    for name in (BROKER, TOPICS, BLOB_STORE):
        await dependencies.check(name)
    handlers = AliveApi(
        settings,
        common,
        blobs,
        ledger,
        producer,
        view,
        JobIds.from_settings(settings),
        TokenVerifier.from_settings(settings),
        Eraser(  # the steps ingest's service takes (services/ingest/__main__.py)
            blobs,
            [
                unpublish_erased(producer, common, ledger),
                *job_data_steps(blobs),  # (a plain store here: no data keys to destroy)
                topic_tombstones(producer, common, [JOBS, REVIEW_QUEUE]),
            ],
        ),
        dependencies=dependencies,
    )
    server = ApiServer(settings, handlers)
    await server.start()
    credentials = grpc.ssl_channel_credentials(keys.tls_ca.read_bytes())
    try:
        async with grpc.aio.secure_channel(f"127.0.0.1:{server.port}", credentials) as channel:
            yield Api(
                AliveStub(channel),
                view,
                keys,
                ledger,
                dependencies,
                settings,
                common,
                broker,
                blobs,
                broker.bootstrap_servers,
            )
    finally:
        await server.stop()
        await producer.stop()
        await broker_probes.close()
        blob_probe.close()


@pytest.fixture
async def api(broker: EmbeddedBroker, tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(broker, tmp_path) as running:
        yield running


def ready_job(api: Api, job_id: str = "j1", creator: str = "alice") -> str:
    api.view.apply(
        StatusEvent(job_id=job_id, creator_id=creator, request_id="r", state=JobState.READY)
    )
    return job_id


async def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        result = call()
        if hasattr(result, "__aiter__"):
            async for _ in result:  # type: ignore[attr-defined]
                pass
        else:
            await result  # type: ignore[misc]
    code: grpc.StatusCode = refused.value.code()
    return code


def issuer(keys: ApiKeys) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(keys.issuer_key.read_bytes(), None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def forged_token(signer: Ed25519PrivateKey, keys: ApiKeys, **changes: object) -> str:
    """A good token's claims, changed as asked, signed by ``signer``."""
    good = mint_token(keys.issuer_key, "alice", CREATOR_SCOPES)
    claims = {**jwt.decode(good, options={"verify_signature": False}), **changes}
    return jwt.encode(claims, signer, algorithm="EdDSA", headers={"kid": DEV_KID})


async def test_a_call_without_a_valid_token_is_unauthenticated(api: Api) -> None:
    job_id = ready_job(api)
    get = GetJobRequest(job_id=job_id)
    assert await code_of(lambda: api.stub.Get(get, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
    bad = {
        "not a jwt": "not-a-jwt",
        "another key": forged_token(Ed25519PrivateKey.generate(), api.keys),
        "expired": forged_token(issuer(api.keys), api.keys, exp=1, iat=0),
        "other audience": forged_token(issuer(api.keys), api.keys, aud="someone-else"),
        "other issuer": forged_token(issuer(api.keys), api.keys, iss="evil"),
        "unsigned": jwt.encode({"sub": "alice"}, None, algorithm="none"),  # type: ignore[arg-type]
    }
    for why, token in bad.items():
        metadata = (("authorization", f"Bearer {token}"),)
        code = await code_of(lambda m=metadata: api.stub.Get(get, timeout=5, metadata=m))  # type: ignore[misc]
        assert code == grpc.StatusCode.UNAUTHENTICATED, why
    assert (await api.stub.Get(get, timeout=5, metadata=api.as_("alice"))).job_id == job_id


async def test_another_creator_cannot_see_or_touch_a_job(api: Api) -> None:
    job_id = ready_job(api, creator="alice")
    mallory = api.as_("mallory")
    calls = {
        "get": lambda: api.stub.Get(GetJobRequest(job_id=job_id), timeout=5, metadata=mallory),
        "watch": lambda: api.stub.Watch(WatchRequest(job_id=job_id), timeout=5, metadata=mallory),
        "publish": lambda: api.stub.Publish(
            PublishJobRequest(job_id=job_id), timeout=5, metadata=mallory
        ),
        "cancel": lambda: api.stub.Cancel(
            CancelJobRequest(job_id=job_id), timeout=5, metadata=mallory
        ),
    }
    unknown = GetJobRequest(job_id="no-such-job")
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.stub.Get(unknown, timeout=5, metadata=mallory)
    for name, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            result = call()
            if name == "watch":
                async for _ in result:  # type: ignore[attr-defined]
                    pass
            else:
                await result  # type: ignore[misc]
        # Exactly what an unknown job gets: nothing tells that the job exists.
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND, name
        assert refused.value.details() == missing.value.details(), name
    assert (await api.view.get(job_id)).state == JobState.READY  # type: ignore[union-attr]
    assert not api.ledger.is_cancelled(job_id)


async def test_scopes_limit_what_a_token_may_do(api: Api) -> None:
    job_id = ready_job(api, creator="alice")
    read_only = api.as_("alice", (Scope.READ,))
    publish = PublishJobRequest(job_id=job_id)
    code = await code_of(lambda: api.stub.Publish(publish, timeout=5, metadata=read_only))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    reviewer = api.as_("reviewer-1", (Scope.REVIEW, Scope.READ))
    seen = await api.stub.Get(GetJobRequest(job_id=job_id), timeout=5, metadata=reviewer)
    assert seen.creator_id == "alice"  # the review tools read any creator's job …
    code = await code_of(
        lambda: api.stub.Publish(publish, timeout=5, metadata=api.as_("reviewer-1"))
    )
    assert code == grpc.StatusCode.NOT_FOUND  # … but post nothing in a creator's name


async def test_the_creator_comes_from_the_token_or_a_trusted_services_claim(api: Api) -> None:
    request = SubmitRequest(photo=photo_bytes(), request_id="r1", output=OutputSpec())
    mine = await api.stub.Submit(request, timeout=10, metadata=api.as_("alice"))
    assert mine.job.creator_id == "alice"
    # The same request id of another creator is another job: ids are scoped to creators.
    theirs = await api.stub.Submit(request, timeout=10, metadata=api.as_("bob"))
    assert theirs.job_id != mine.job_id and not theirs.existing
    platform = api.as_("story-service", (Scope.SERVICE, Scope.SUBMIT), **{CREATOR_CLAIM: "carol"})
    on_behalf = await api.stub.Submit(request, timeout=10, metadata=platform)
    assert on_behalf.job.creator_id == "carol"
    # A creator's token cannot claim to act for someone else.
    impostor = api.as_("mallory", CREATOR_SCOPES, **{CREATOR_CLAIM: "alice"})
    again = await api.stub.Submit(request, timeout=10, metadata=impostor)
    assert again.job.creator_id == "mallory" and again.job_id != mine.job_id


async def test_everyone_together_over_the_cap_are_told_to_retry(api: Api) -> None:
    for job_id, creator in (("j1", "alice"), ("j2", "bob"), ("j3", "bob"), ("j4", "dan")):
        api.view.apply(StatusEvent(job_id=job_id, creator_id=creator, state=JobState.GENERATED))
    request = SubmitRequest(photo=photo_bytes(), request_id="r1", output=OutputSpec())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.stub.Submit(request, timeout=10, metadata=api.as_("carol"))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(refused.value.trailing_metadata() or ())
    assert trailers["alive-reason-code"] == "JOBS_IN_FLIGHT"
    api.view.apply(StatusEvent(job_id="j2", creator_id="bob", state=JobState.READY))
    accepted = await api.stub.Submit(request, timeout=10, metadata=api.as_("carol"))
    assert not accepted.existing and accepted.job.state == JobState.SUBMITTED


async def test_submit_is_unavailable_at_once_while_the_broker_is_down(api: Api) -> None:
    # The broker probe, pointed where nothing answers, finds it down as a dead broker would.
    dead = ServiceSettings(kafka={"bootstrap_servers": f"127.0.0.1:{free_port()}"})  # type: ignore[arg-type]
    dead_probes = BrokerProbes(dead, stage_topics(INGEST))
    api.dependencies.add(BROKER, dead_probes.broker)
    try:
        assert not await api.dependencies.check(BROKER)
        request = SubmitRequest(photo=photo_bytes(), request_id="r-down", output=OutputSpec())
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.stub.Submit(request, timeout=10, metadata=api.as_("alice"))
        assert time.monotonic() - started < 2
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "broker" in (refused.value.details() or "")
        trailers = dict(refused.value.trailing_metadata() or ())
        assert trailers["alive-reason-code"] == "QUEUE_UNAVAILABLE"
        assert trailers["alive-retry-after-s"] == "5"
        assert (
            await api.view.get(JobIds.from_settings(api.settings).for_request("alice", "r-down"))
            is None
        )
    finally:
        await dead_probes.close()
    # Back: the same request is taken.
    probes = BrokerProbes(api.common, stage_topics(INGEST))
    api.dependencies.add(BROKER, probes.broker)
    try:
        assert await api.dependencies.check(BROKER)
        accepted = await api.stub.Submit(request, timeout=10, metadata=api.as_("alice"))
        assert not accepted.existing and accepted.job.state == JobState.SUBMITTED
    finally:
        await probes.close()


async def test_submit_is_unavailable_when_the_broker_does_not_take_the_job_in_time(
    api: Api,
) -> None:
    # The probes still say all is well (the broker went since they last looked), but the
    # broker does not answer: SIGSTOP holds the real broker's answers.
    api.settings.queue_timeout_s = 1.0
    request = SubmitRequest(photo=photo_bytes(), request_id="r-hung", output=OutputSpec())
    assert api.broker.pid is not None
    os.kill(api.broker.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.stub.Submit(request, timeout=10, metadata=api.as_("alice"))
        assert time.monotonic() - started < 3
    finally:
        os.kill(api.broker.pid, signal.SIGCONT)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert dict(refused.value.trailing_metadata() or ())["alive-reason-code"] == "QUEUE_UNAVAILABLE"


async def test_a_creator_cancels_a_job_once(api: Api) -> None:
    job_id = ready_job(api, creator="alice")
    cancel = CancelJobRequest(job_id=job_id)
    cancelled = await api.stub.Cancel(cancel, timeout=5, metadata=api.as_("alice"))
    assert cancelled.state == JobState.CANCELLED and cancelled.terminal
    assert api.ledger.is_cancelled(job_id)
    with pytest.raises(grpc.aio.AioRpcError) as ended:
        await api.stub.Cancel(cancel, timeout=5, metadata=api.as_("alice"))
    assert ended.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(ended.value.trailing_metadata() or ())["alive-reason-code"] == "JOB_ENDED"


class RacingStore(LocalBlobStore):
    """A replica's store whose request-record creates wait for every replica's: both Submits
    have checked, validated and uploaded before either records the request."""

    def __init__(self, root: Path, meet: threading.Barrier) -> None:
        super().__init__(root)
        self._meet = meet

    def create_key(self, key: str, data: bytes) -> bool:
        if key.startswith(f"ledger/{REQUEST_RECORDS}/"):
            self._meet.wait()
        return super().create_key(key, data)


def requests_for(bootstrap: str, job_id: str) -> list[bytes]:
    """The values of the job's records on alive.requests."""
    records = read_topic(bootstrap, "alive.requests")
    return [r.value for r in records if r.key == job_id.encode()]


async def test_a_submit_racing_on_two_ingest_replicas_is_one_job(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Two ingest replicas (each its own API, producer and status view) over one store, the
    same request submitted to both at once: one job id, one request record, never an error,
    and every request sent for the job is the same."""
    meet = threading.Barrier(2, timeout=30)
    async with (
        serving(broker, tmp_path, RacingStore(tmp_path / "blobs", meet)) as one,
        serving(broker, tmp_path, RacingStore(tmp_path / "blobs", meet)) as two,
    ):
        request = SubmitRequest(
            photo=photo_bytes(), prompt="waves", request_id="race-1", output=OutputSpec()
        )
        answers = await asyncio.gather(
            *(r.stub.Submit(request, timeout=20, metadata=r.as_("alice")) for r in (one, two))
        )
        (job_id,) = {a.job_id for a in answers}
        assert sorted(a.existing for a in answers) == [False, True]
        assert all(a.job.state == JobState.SUBMITTED for a in answers)
        record = one.ledger.get(REQUEST_RECORDS, job_id)
        assert record is not None and one.ledger.was_sent(REQUEST_RECORDS, job_id)
        sent = await asyncio.to_thread(requests_for, broker.bootstrap_servers, job_id)
        # The winner's request, sent once or more; once sent, the record keeps no prompt.
        kept = [ImagePromptRequest.FromString(r) for r in sent]
        for request_sent in kept:
            request_sent.ClearField("prompt")
        assert sent and {r.SerializeToString() for r in kept} == {record}
        uploads = list((tmp_path / "blobs" / "uploads" / "alice" / "race-1").iterdir())
        assert len(uploads) == 2  # the loser's upload stays, unreferenced
        # A retry on either replica is the same job, and sends nothing new.
        again = await two.stub.Submit(request, timeout=20, metadata=two.as_("alice"))
        assert again.job_id == job_id and again.existing
        assert len(await asyncio.to_thread(requests_for, broker.bootstrap_servers, job_id)) == len(
            sent
        )


async def test_a_request_recorded_but_never_sent_is_sent_by_the_retry(
    api: Api, broker: EmbeddedBroker
) -> None:
    """An ingest replica died between recording a request and sending it: the Submit's retry,
    on any replica, sends the recorded request (and not a new one)."""
    request = SubmitRequest(photo=photo_bytes(), request_id="crashed", output=OutputSpec())
    job_id = JobIds.from_settings(IngestSettings(job_id_key_path=api.keys.job_id_key)).for_request(
        "alice", "crashed"
    )
    recorded = ImagePromptRequest(
        request_id="crashed", creator_id="alice", prompt="recorded", submitted_at_ms=1234
    )
    api.ledger.decide(REQUEST_RECORDS, job_id, recorded.SerializeToString())
    answer = await api.stub.Submit(request, timeout=20, metadata=api.as_("alice"))
    assert answer.job_id == job_id and answer.existing
    assert api.ledger.was_sent(REQUEST_RECORDS, job_id)
    assert answer.job.history[0].at_ms == 1234  # the recorded request's SUBMITTED status
    sent = await asyncio.to_thread(requests_for, broker.bootstrap_servers, job_id)
    assert sent == [recorded.SerializeToString()]


def test_the_api_will_not_serve_plaintext_unless_told_to() -> None:
    with pytest.raises(ValueError, match="TLS_CERT_PATH"):
        server_credentials(IngestSettings())
    assert server_credentials(IngestSettings(grpc_plaintext=True)) is None


async def test_with_a_client_ca_only_callers_with_its_certificate_get_through(
    tmp_path: Path,
) -> None:
    keys = ensure_api_keys(tmp_path / "keys")
    clients_ca = DevCa.new("platform services CA")
    (tmp_path / "clients-ca.pem").write_bytes(clients_ca.cert_pem)
    settings = IngestSettings(
        grpc_port=0,
        tls_cert_path=keys.tls_cert,
        tls_key_path=keys.tls_key,
        tls_client_ca_path=tmp_path / "clients-ca.pem",
    )
    # Only the transport is under test: the handlers are never reached.
    handlers = AliveApi(settings, *([None] * 8), dependencies=None)  # type: ignore[arg-type]
    server = ApiServer(settings, handlers)
    await server.start()
    client_key = ec.generate_private_key(ec.SECP256R1())
    callers = {
        "with its certificate": grpc.ssl_channel_credentials(
            keys.tls_ca.read_bytes(),
            key_pem(client_key),
            clients_ca.issue(client_key, "story-service", server=False),
        ),
        "without a certificate": grpc.ssl_channel_credentials(keys.tls_ca.read_bytes()),
    }
    answers = {}
    try:
        for name, credentials in callers.items():
            address = f"127.0.0.1:{server.port}"
            async with grpc.aio.secure_channel(address, credentials) as channel:
                check = health_pb2_grpc.HealthStub(channel).Check
                try:
                    await check(health_pb2.HealthCheckRequest(), timeout=5)
                    answers[name] = "served"
                except grpc.aio.AioRpcError as exc:
                    answers[name] = exc.code().name
    finally:
        await server.stop()
    assert answers == {"with its certificate": "served", "without a certificate": "UNAVAILABLE"}


# Reports


def published_job(api: Api, job_id: str = "v1", creator: str = "carol") -> str:
    api.view.apply(
        StatusEvent(job_id=job_id, creator_id=creator, request_id="r", state=JobState.PUBLISHED)
    )
    return job_id


# Every reason a user may give: the moderation vocabulary (services/moderation/policy.yaml).
VOCABULARY = (
    ReasonCode.REPORTED_SEXUAL,
    ReasonCode.REPORTED_SEXUAL_MINOR,
    ReasonCode.REPORTED_VIOLENCE,
    ReasonCode.REPORTED_GORE,
    ReasonCode.REPORTED_WEAPONS,
    ReasonCode.REPORTED_SELF_HARM,
    ReasonCode.REPORTED_HATE,
    ReasonCode.REPORTED_HARASSMENT,
    ReasonCode.REPORTED_REAL_PERSON,
    ReasonCode.REPORTED_DECEPTION,
    ReasonCode.REPORTED_DRUGS,
    ReasonCode.REPORTED_SPAM,
    ReasonCode.REPORTED_PII,
)


def test_the_report_vocabulary_is_the_moderation_policys() -> None:
    prompt = yaml.safe_load(POLICY.read_text())["prompt"]
    # Term categories and pattern categories; web_address is labelled spam, not a harm.
    categories = (set(prompt["categories"]) | set(prompt["patterns"])) - {"web_address"}
    assert {f"REPORTED_{c.upper()}" for c in categories} == set(VOCABULARY) == REPORT_REASONS


async def test_anyone_signed_in_reports_a_published_video_once_with_any_reason(
    api: Api, broker: EmbeddedBroker
) -> None:
    job_id = published_job(api)
    for n, reason in enumerate(VOCABULARY):
        answer = await api.stub.Report(
            ReportRequest(job_id=job_id, reason_code=reason), timeout=5, metadata=api.as_(f"u{n}")
        )
        assert not answer.duplicate
    again = await api.stub.Report(
        ReportRequest(job_id=job_id, reason_code=ReasonCode.REPORTED_SPAM),
        timeout=5,
        metadata=api.as_("u0"),
    )
    assert again.duplicate  # the same user and video: counted once
    reports = [
        UserReport.FromString(r.value)
        for r in await asyncio.to_thread(read_topic, broker.bootstrap_servers, "alive.reports")
        if r.key == job_id.encode()
    ]
    assert sorted(r.reason_code for r in reports[-len(VOCABULARY) :]) == sorted(VOCABULARY)
    assert {r.reporter for r in reports[-len(VOCABULARY) :]} == {
        f"u{n}" for n in range(len(VOCABULARY))
    }


async def test_a_report_needs_a_reason_of_the_vocabulary_and_a_published_video(api: Api) -> None:
    job_id = published_job(api, "v2")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await api.stub.Report(
            ReportRequest(job_id=job_id, reason_code=ReasonCode.REVIEW_REJECTED),
            timeout=5,
            metadata=api.as_("u1"),
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(unknown.value.trailing_metadata() or ())
    assert trailers["alive-reason-code"] == ReasonCode.REPORT_REASON_UNKNOWN
    ready = ready_job(api, "not-live")
    spam = ReasonCode.REPORTED_SPAM
    assert (
        await code_of(
            lambda: api.stub.Report(
                ReportRequest(job_id=ready, reason_code=spam), timeout=5, metadata=api.as_("u1")
            )
        )
        == grpc.StatusCode.NOT_FOUND
    )
    no_scope = api.as_("u1", (Scope.READ,))
    assert (
        await code_of(
            lambda: api.stub.Report(
                ReportRequest(job_id=job_id, reason_code=spam), timeout=5, metadata=no_scope
            )
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )


async def test_submit_stores_only_the_cleaned_photo(
    api: Api, broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """The upload as sent (EXIF with a place and a name, rotated by its orientation tag) never
    reaches the store: the request names a PNG without metadata, turned upright."""
    image = Image.new("RGB", (160, 120), (30, 90, 200))
    exif = Image.Exif()
    exif[0x010E] = "GPS 48.8584N 2.2945E"  # ImageDescription
    exif[0x013B] = "Jane Creator"  # Artist
    exif[0x0112] = 6  # Orientation: rotate 90 degrees to show it upright
    sent = io.BytesIO()
    image.save(sent, "JPEG", exif=exif.tobytes())
    answer = await api.stub.Submit(
        SubmitRequest(photo=sent.getvalue(), request_id="exif-1", output=OutputSpec()),
        timeout=10,
        metadata=api.as_("c-exif"),
    )
    (request,) = [
        ImagePromptRequest.FromString(r.value)
        for r in await asyncio.to_thread(read_topic, broker.bootstrap_servers, "alive.requests")
        if r.key == answer.job_id.encode()
    ]
    key = LocalBlobStore(tmp_path / "blobs").key_for(request.photo.uri)
    assert key is not None and key.endswith(".png")
    stored = (tmp_path / "blobs" / key).read_bytes()
    assert stored.startswith(b"\x89PNG") and request.photo.content_type == "image/png"
    assert b"Exif" not in stored and b"GPS" not in stored and b"Jane" not in stored
    with Image.open(io.BytesIO(stored)) as cleaned:
        assert cleaned.size == (120, 160) and not cleaned.getexif()
    # Beside the ledger's request record, the cleaned photo is the only blob.
    blobs = tmp_path / "blobs"
    stored_files = [p for p in blobs.rglob("*") if p.is_file()]
    outside_ledger = [p.name for p in stored_files if p.relative_to(blobs).parts[0] != "ledger"]
    assert outside_ledger == [Path(key).name]


def indexed_ready_job(api: Api, job_id: str, creator: str) -> str:
    """A READY job as ingest would have indexed it, with a photo blob and a ledger entry."""
    ready_job(api, job_id, creator)
    record_job(api.blobs, ErasedJob(job_id, creator, "r"))
    api.blobs.write_key(f"photos/{job_id}/photo-x.png", b"png")
    api.ledger.decide("ingest", job_id, b"record")
    return job_id


async def test_a_creator_erases_its_own_job_and_nobody_elses(api: Api) -> None:
    mine = indexed_ready_job(api, "e-alice", "alice")
    theirs = indexed_ready_job(api, "e-bob", "bob")
    erase = api.stub.Erase
    assert (
        await code_of(
            lambda: erase(EraseRequest(job_id=theirs), timeout=5, metadata=api.as_("alice"))
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await code_of(
            lambda: erase(EraseRequest(creator_id="bob"), timeout=5, metadata=api.as_("alice"))
        )
        == grpc.StatusCode.PERMISSION_DENIED
    )
    no_scope = api.as_("alice", (Scope.READ,))
    assert (
        await code_of(lambda: erase(EraseRequest(job_id=mine), timeout=5, metadata=no_scope))
        == grpc.StatusCode.PERMISSION_DENIED
    )

    published = Job(job_id=mine, creator_id="alice")
    api.ledger.decide("review", mine, StageOutcome(passed=published).SerializeToString())
    receipt = await erase(EraseRequest(job_id=mine), timeout=5, metadata=api.as_("alice"))
    assert list(receipt.job_ids) == [mine] and receipt.erased_at_ms > 0
    assert receipt.deleted["blobs.photos"] == 1 and receipt.deleted["ledger.entries"] == 2
    assert receipt.deleted["unpublished"] == 1 and receipt.deleted["tombstones.jobs"] == 1
    assert list(receipt.steps) == ["mark", "unpublish", "blobs", "ledger", "tombstones", "index"]
    unpublished = await asyncio.to_thread(read_topic, api.bootstrap, UNPUBLISHED.default_name)
    (taken_down,) = [Unpublished.FromString(r.value) for r in unpublished if r.key == mine.encode()]
    assert list(taken_down.reason_codes) == [ReasonCode.JOB_ERASED]
    for topic in (JOBS, REVIEW_QUEUE):
        records = await asyncio.to_thread(read_topic, api.bootstrap, topic.default_name)
        assert [r.value for r in records if r.key == mine.encode()] == [None]
    assert api.ledger.is_erased(mine) and api.blobs.keys_under(f"photos/{mine}") == []
    assert (
        await code_of(
            lambda: api.stub.Get(GetJobRequest(job_id=mine), timeout=5, metadata=api.as_("alice"))
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert (
        await code_of(  # erased already: there is no such job any more
            lambda: erase(EraseRequest(job_id=mine), timeout=5, metadata=api.as_("alice"))
        )
        == grpc.StatusCode.NOT_FOUND
    )
    assert api.blobs.keys_under(f"photos/{theirs}")  # untouched


async def test_a_privacy_admin_erases_any_creator(api: Api) -> None:
    for n in range(2):
        indexed_ready_job(api, f"c-{n}", "carol")
    admin = api.as_("dpo", (Scope.PRIVACY_ADMIN,))
    receipt = await api.stub.Erase(EraseRequest(creator_id="carol"), timeout=5, metadata=admin)
    assert sorted(receipt.job_ids) == ["c-0", "c-1"] and creator_job_ids(api.blobs, "carol") == []
    assert await api.view.get("c-0") is None and api.view.in_flight("carol") == 0


async def test_a_request_id_of_an_erased_job_is_not_taken_again(api: Api) -> None:
    alice = api.as_("alice")
    first = await api.stub.Submit(
        SubmitRequest(photo=photo_bytes(), request_id="again"), timeout=10, metadata=alice
    )
    await api.stub.Erase(EraseRequest(job_id=first.job_id), timeout=5, metadata=alice)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.stub.Submit(
            SubmitRequest(photo=photo_bytes(), request_id="again"), timeout=10, metadata=alice
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert ReasonCode.JOB_ERASED in (refused.value.details() or "")
    assert api.blobs.keys_under("uploads/alice/again/") == []  # the upload went with the job
