"""The review web app in process, on the test broker: reviewers sign in, claim, decide; the
queue is rebuilt from Kafka after a restart, with nothing lost and nothing applied twice;
two reviewers racing on one item make one decision; reports queue and unpublish."""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from alive.attestation import private_key_pem
from alive.blobs import BlobStore, StageLedger, open_configured_blob_store
from alive.dependencies import BLOB_STORE, BROKER, TOPICS
from alive.kafka import ensure_topics, make_producer
from alive.pipeline import (
    PUBLISH_REQUESTS,
    PUBLISHED,
    REPORTS,
    REVIEW,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    UNPUBLISHED,
)
from alive.reasons import ReasonCode
from alive.settings import ServiceSettings
from alive.v1.events_pb2 import (
    Attestation,
    Job,
    PublishedVideo,
    PublishRequest,
    ReviewDecision,
    ReviewItem,
    ReviewOutcome,
    StageOutcome,
    StageRecord,
    Unpublished,
    UserReport,
    Verdict,
)
from alive_tools.embedded.broker import EmbeddedBroker
from alive_tools.keys import ensure_blob_keyring
from services.review.stage import READY_STAGE
from services.review.web.auth import hash_password
from services.review.web.service import ReviewWeb
from services.review.web.settings import ReviewWebSettings
from tests.support import read_topic

M = TypeVar("M", bound=Message)
PASSWORDS = {"ana": "ana-secret-1", "ben": "ben-secret-2"}
HASHES = {name: hash_password(p) for name, p in PASSWORDS.items()}


@dataclass
class Env:
    common: ServiceSettings
    blobs: BlobStore
    key_path: Path
    bootstrap: str

    def topic(self, key: str) -> str:
        return self.common.topics[key]

    async def records(self, key: str, message: type[M]) -> list[M]:
        """Every record on the topic so far (read in a thread: read_topic runs its own loop)."""
        found = await asyncio.to_thread(read_topic, self.bootstrap, self.topic(key))
        return [message.FromString(r.value) for r in found]


@pytest.fixture
async def env(broker: EmbeddedBroker, tmp_path: Path) -> Env:
    run = uuid.uuid4().hex[:8]
    renamed = {
        t.key: f"{run}.{t.default_name}"
        for t in (REVIEW_QUEUE, REVIEW_DECISIONS, REPORTS, UNPUBLISHED, PUBLISHED, PUBLISH_REQUESTS)
    }
    common = ServiceSettings(
        kafka={"bootstrap_servers": broker.bootstrap_servers},  # type: ignore[arg-type]
        blob_url=str(tmp_path / "blobs"),
        blob_keyring_path=ensure_blob_keyring(tmp_path / "keys"),
        topics=renamed,
    )
    await ensure_topics(common)
    key_path = tmp_path / "decisions.pem"
    key_path.write_bytes(private_key_pem(Ed25519PrivateKey.generate()))
    return Env(common, open_configured_blob_store(common), key_path, broker.bootstrap_servers)


def web_settings(env: Env, **changes: object) -> ReviewWebSettings:
    return ReviewWebSettings(
        port=0,
        reviewers=HASHES,
        secure_cookies=False,
        decision_key_path=env.key_path,
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
async def start(env: Env) -> AsyncIterator[Callable[..., Awaitable[ReviewWeb]]]:
    """Starts review web apps; each is stopped at the end if the test did not."""
    running: list[ReviewWeb] = []

    async def start_one(**changes: object) -> ReviewWeb:
        web = ReviewWeb(web_settings(env, **changes), env.common, CollectorRegistry())
        await web.start()
        running.append(web)
        return web

    yield start_one
    for web in running:
        await web.stop()


def ready_job(env: Env, job_id: str, prompt: str = "a cat waves at dusk") -> Job:
    """A READY job in the ledger, as the video checkpoint passed it (what reviewers see): no
    prompt in the record, only the blob ingest stored it in."""
    job = Job(job_id=job_id, creator_id="carol")
    job.prompt_ref.CopyFrom(
        env.blobs.put_bytes(f"prompts/{job_id}.txt", prompt.encode(), "text/plain")
    )
    job.photo.CopyFrom(env.blobs.put_bytes(f"photos/{job_id}.png", b"png bytes", "image/png"))
    job.video.CopyFrom(env.blobs.put_bytes(f"videos/{job_id}.mp4", b"mp4 bytes", "video/mp4"))
    job.stages.append(
        StageRecord(
            stage="moderation-prompt",
            verdict=Verdict.REVIEW,
            reason_codes=[ReasonCode.PROMPT_REAL_PERSON],
            scores={"real_person": 0.91},
            versions={"policy": "p7"},
        )
    )
    job.attestations.append(
        Attestation(stage="moderation-video", verdict=Verdict.PASS, versions={"policy": "p7"})
    )
    StageLedger(env.blobs).decide(READY_STAGE, job_id, StageOutcome(passed=job).SerializeToString())
    return job


async def queue(env: Env, job: Job, at_ms: int, origin: str = "publish") -> ReviewItem:
    item = ReviewItem(
        job_id=job.job_id,
        creator_id=job.creator_id,
        reason_codes=[ReasonCode.PROMPT_REAL_PERSON],
        origin=origin,
        queued_at_ms=at_ms,
        video_sha256=job.video.sha256,
    )
    await produce(env, REVIEW_QUEUE.key, job.job_id, item.SerializeToString())
    return item


async def produce(env: Env, topic_key: str, key: str, value: bytes | None) -> None:
    producer = make_producer(env.common, "test")
    await producer.start()
    try:
        await producer.send_and_wait(env.topic(topic_key), value, key=key.encode())
    finally:
        await producer.stop()


class Browser:
    """A reviewer's browser without JavaScript: cookies, forms, the CSRF token in them."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
            _NoRedirect(),
        )

    def _call(self, path: str, form: dict[str, str] | None) -> tuple[int, str, str]:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        try:
            with self.opener.open(self.base + path, data=data, timeout=10) as response:
                return response.status, response.read().decode(), ""
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace"), exc.headers.get("Location", "")

    async def get(self, path: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(self._call, path, None)

    async def post(self, path: str, form: dict[str, str]) -> tuple[int, str, str]:
        return await asyncio.to_thread(self._call, path, form)

    async def sign_in(self, name: str, password: str | None = None) -> None:
        _, page, _ = await self.get("/login")
        status, _, location = await self.post(
            "/login",
            {"csrf": csrf(page), "name": name, "password": password or PASSWORDS[name]},
        )
        assert (status, location) == (303, "/"), "signed in"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the test looks at each redirect itself


def csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


async def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_sign_in_queue_page_and_item_page_show_what_a_reviewer_needs(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    job = ready_job(env, "job-a")
    await queue(env, job, 1000)
    web = await start()
    browser = Browser(web.port)
    status, _, location = await browser.get("/")
    assert (status, location) == (303, "/login")  # signed out: the sign-in page
    _, page, _ = await browser.get("/login")
    refused = await browser.post("/login", {"csrf": csrf(page), "name": "ana", "password": "x"})
    assert refused[2] == "/login?error=1"
    await browser.sign_in("ana")
    _, listing, _ = await browser.get("/")
    assert "job-a" in listing and "PROMPT_REAL_PERSON" in listing
    _, item, _ = await browser.get("/items/publish/job-a")
    assert 'src="/items/publish/job-a/video"' in item and 'src="/items/publish/job-a/photo"' in item
    assert "a cat waves at dusk" in item  # the prompt, shown here only
    assert "moderation-prompt" in item and "real_person 0.910" in item and "p7" in item
    status, body, _ = await browser.get("/items/publish/job-a/video")
    assert status == 200 and body == "mp4 bytes"
    assert (await Browser(web.port).get("/items/publish/job-a/video"))[0] == 401  # signed out


async def test_every_form_needs_its_csrf_token(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    job = ready_job(env, "job-c")
    await queue(env, job, 1000)
    web = await start()
    browser = Browser(web.port)
    assert (await browser.post("/login", {"name": "ana", "password": PASSWORDS["ana"]}))[0] == 403
    await browser.sign_in("ana")
    await browser.get("/items/publish/job-c")
    forged = {"csrf": "not-the-token", "outcome": "approve"}
    assert (await browser.post("/items/publish/job-c/decision", forged))[0] == 403
    assert (await browser.post("/logout", {"csrf": "nope"}))[0] == 403
    assert not web.queue.decisions


async def test_a_session_expires(env: Env, start: Callable[..., Awaitable[ReviewWeb]]) -> None:
    web = await start(session_ttl_s=1)
    browser = Browser(web.port)
    await browser.sign_in("ana")
    assert (await browser.get("/"))[0] == 200
    await asyncio.sleep(1.2)
    assert (await browser.get("/"))[2] == "/login"


async def test_two_reviewers_racing_on_one_item_make_one_decision(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    job = ready_job(env, "job-r")
    await queue(env, job, 1000)
    web = await start()
    ana, ben = Browser(web.port), Browser(web.port)
    await ana.sign_in("ana")
    await ben.sign_in("ben")
    _, ana_page, _ = await ana.get("/items/publish/job-r")  # ana claims it
    _, ben_page, _ = await ben.get("/items/publish/job-r")
    assert "claimed by ana" in ben_page and 'id="approve"' not in ben_page
    approve = {"csrf": csrf(ana_page), "outcome": "approve", "note": "fine"}
    reject = {
        "csrf": csrf(ben_page),
        "outcome": "reject",
        "reason": ReasonCode.PROMPT_REAL_PERSON,
    }
    answers = await asyncio.gather(
        ana.post("/items/publish/job-r/decision", approve),
        ana.post("/items/publish/job-r/decision", approve),
        ben.post("/items/publish/job-r/decision", reject),
    )
    assert sorted(a[0] for a in answers) == [303, 409, 409]
    await asyncio.sleep(0.5)
    decided = await env.records(REVIEW_DECISIONS.key, ReviewDecision)
    assert [(d.reviewer, d.outcome) for d in decided] == [("ana", ReviewOutcome.REVIEW_APPROVE)]
    (request,) = await env.records(PUBLISH_REQUESTS.key, PublishRequest)
    assert request.decision.decision_id == decided[0].decision_id
    assert request.decision.policy_version == "p7"
    samples = web.metrics.decisions.labels("ana", "approve")
    assert samples._value.get() == 1


async def test_a_restart_rebuilds_the_queue_loses_no_decision_and_applies_none_twice(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    jobs = [ready_job(env, f"job-{n}") for n in range(3)]
    for n, job in enumerate(jobs):
        await queue(env, job, 1000 + n)
    first = await start()
    browser = Browser(first.port)
    await browser.sign_in("ana")
    _, page, _ = await browser.get("/items/publish/job-0")
    reject = {"csrf": csrf(page), "outcome": "reject", "reason": ReasonCode.VIDEO_SEXUAL}
    assert (await browser.post("/items/publish/job-0/decision", reject))[0] == 303
    await first.stop()

    # The review service has not acted on the decision yet: the restarted app sends it again
    # (the review service's ledger makes a second delivery harmless).
    second = await start()
    assert [i.job_id for i in second.queue.open_items()] == ["job-1", "job-2"]
    assert second.queue.decisions["publish/job-0"].reason_code == ReasonCode.VIDEO_SEXUAL
    await asyncio.sleep(0.5)
    requests = await env.records(PUBLISH_REQUESTS.key, PublishRequest)
    assert [r.job_id for r in requests] == ["job-0", "job-0"]
    assert len({r.decision.decision_id for r in requests}) == 1  # one decision, sent twice
    await second.stop()

    # Once review has acted (its ledger has the job), a restart sends nothing more.
    StageLedger(env.blobs).decide(REVIEW.name, "job-0", StageOutcome().SerializeToString())
    third = await start()
    assert [i.job_id for i in third.queue.open_items()] == ["job-1", "job-2"]
    await asyncio.sleep(0.5)
    assert len(await env.records(PUBLISH_REQUESTS.key, PublishRequest)) == 2
    assert len(await env.records(REVIEW_DECISIONS.key, ReviewDecision)) == 1
    depth = third.metrics  # the gauges read the rebuilt queue
    assert depth is not None and len(third.queue.open_items()) == 2


def published(env: Env, job_id: str) -> Job:
    """A published job as the web app sees it: READY in the ledger (review's own record may
    come after the first report)."""
    return ready_job(env, job_id)


async def user_report(env: Env, job_id: str, reporter: str, reason: str) -> None:
    report = UserReport(job_id=job_id, reporter=reporter, reason_code=reason, report_id=reporter)
    await produce(env, REPORTS.key, job_id, report.SerializeToString())


async def test_reports_at_the_threshold_send_the_video_to_a_person(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    published(env, "vid-t")
    web = await start(report_threshold=2)
    await user_report(env, "vid-t", "reporter-one", ReasonCode.REPORTED_SPAM)
    await user_report(env, "vid-t", "reporter-one", ReasonCode.REPORTED_SPAM)  # the same again
    await asyncio.sleep(1)
    assert not web.queue.open_items()
    await user_report(env, "vid-t", "reporter-two", ReasonCode.REPORTED_HATE)
    await wait_until(lambda: bool(web.queue.open_items()))
    (item,) = await env.records(REVIEW_QUEUE.key, ReviewItem)
    assert item.origin == "report" and ReasonCode.REPORTED_THRESHOLD in item.reason_codes
    assert not await env.records(UNPUBLISHED.key, Unpublished)  # not severe: a person decides

    # A reviewer rejects it: it comes off Stories.
    browser = Browser(web.port)
    await browser.sign_in("ben")
    _, page, _ = await browser.get("/items/report/vid-t")
    assert "reporter-" not in page  # reporters are not shown
    form = {"csrf": csrf(page), "outcome": "reject", "reason": ReasonCode.REPORTED_HATE}
    assert (await browser.post("/items/report/vid-t/decision", form))[0] == 303
    await asyncio.sleep(0.5)
    (gone,) = await env.records(UNPUBLISHED.key, Unpublished)
    assert gone.job_id == "vid-t" and list(gone.reason_codes) == [ReasonCode.REVIEW_REJECTED]


async def test_one_severe_report_unpublishes_at_once_and_only_once(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    published(env, "vid-s")
    web = await start()
    await user_report(env, "vid-s", "reporter-nine", ReasonCode.REPORTED_SEXUAL_MINOR)
    await wait_until(lambda: web.queue.taken_down("vid-s"))
    (gone,) = await env.records(UNPUBLISHED.key, Unpublished)
    assert gone.creator_id == "carol"
    assert list(gone.reason_codes) == [ReasonCode.REPORTED_SEXUAL_MINOR]
    assert b"reporter-nine" not in gone.SerializeToString()  # never the reporter
    assert [i.job_id for i in web.queue.open_items()] == ["vid-s"]
    await web.stop()
    again = await start()  # rebuilt from Kafka: neither queued nor unpublished twice
    await asyncio.sleep(0.5)
    assert len(await env.records(UNPUBLISHED.key, Unpublished)) == 1
    assert len(await env.records(REVIEW_QUEUE.key, ReviewItem)) == 1
    assert [i.job_id for i in again.queue.open_items()] == ["vid-s"]


async def test_an_approval_puts_a_video_reports_took_down_back_up_once(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    job = published(env, "vid-a")
    job.attestations.append(
        Attestation(stage=REVIEW.name, verdict=Verdict.PASS, scores={"provenance_trusted": 1})
    )
    StageLedger(env.blobs).decide(
        REVIEW.name, job.job_id, StageOutcome(passed=job).SerializeToString()
    )
    web = await start()
    await user_report(env, "vid-a", "reporter-five", ReasonCode.REPORTED_SELF_HARM)
    await wait_until(lambda: web.queue.taken_down("vid-a"))

    browser = Browser(web.port)
    await browser.sign_in("ana")
    _, page, _ = await browser.get("/items/report/vid-a")
    form = {"csrf": csrf(page), "outcome": "approve", "note": "a film still, not self-harm"}
    assert (await browser.post("/items/report/vid-a/decision", form))[0] == 303
    await wait_until(lambda: not web.queue.taken_down("vid-a"))
    (back,) = await env.records(PUBLISHED.key, PublishedVideo)
    assert (back.job_id, back.video.sha256) == ("vid-a", job.video.sha256)
    assert back.ai_generated is False and back.review.stage == REVIEW.name
    assert back.provenance_state == "Trusted"

    await web.stop()
    again = await start()  # rebuilt: the approval is carried out, nothing is sent twice
    await asyncio.sleep(0.5)
    assert not again.queue.taken_down("vid-a")
    assert len(await env.records(PUBLISHED.key, PublishedVideo)) == 1
    assert len(await env.records(UNPUBLISHED.key, Unpublished)) == 1


async def test_behind_an_sso_proxy_the_reviewer_comes_from_its_header(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    web = await start(trusted_user_header="X-Auth-Request-User")
    browser = Browser(web.port)
    browser.opener.addheaders = [("X-Auth-Request-User", "dana@example.com")]
    status, _, location = await browser.get("/login")
    assert (status, location) == (303, "/")  # no password form: the proxy signed dana in
    status, page, _ = await browser.get("/")
    assert status == 200 and "dana@example.com" in page
    browser.opener.addheaders = [("X-Auth-Request-User", "eve@example.com")]
    assert (await browser.get("/"))[2] == "/login"  # dana's session is not eve's
    stranger = Browser(web.port)  # no header: the proxy did not sign anyone in
    assert (await stranger.get("/"))[2] == "/login"
    assert (await stranger.get("/login"))[0] == 401
    password = {"name": "ana", "password": PASSWORDS["ana"]}
    assert (await stranger.post("/login", password))[0] == 401  # passwords are off


async def test_an_erased_job_leaves_the_queue_now_and_after_a_restart(
    env: Env, start: Callable[..., Awaitable[ReviewWeb]]
) -> None:
    kept, erased = ready_job(env, "job-kept"), ready_job(env, "job-erased")
    await queue(env, kept, 1000)
    await queue(env, erased, 1001)
    web = await start()
    await wait_until(lambda: len(web.desk.queue.open_items()) == 2)
    await produce(env, REVIEW_QUEUE.key, erased.job_id, None)  # the erasure's tombstone
    await wait_until(lambda: [i.job_id for i in web.desk.queue.open_items()] == ["job-kept"])
    await web.stop()
    again = await start()
    assert [i.job_id for i in again.desk.queue.open_items()] == ["job-kept"]


async def test_the_app_is_not_ready_while_its_blob_store_is_unusable_and_says_so(
    env: Env, tmp_path: Path
) -> None:
    """Readiness covers what the app depends on (alive/dependencies.py), as a stage's does:
    the broker, the review topics and the blob store, each probed, each a gauge."""
    registry = CollectorRegistry()
    web = ReviewWeb(web_settings(env), env.common, registry)

    def up(dependency: str) -> float | None:
        labels = {"service": "review-web", "dependency": dependency}
        return registry.get_sample_value("alive_dependency_up", labels)

    await web.start()
    try:
        assert web.ready
        assert (up(BROKER), up(TOPICS), up(BLOB_STORE)) == (1, 1, 1)
        store = tmp_path / "blobs"
        kept = store.rename(tmp_path / "blobs-kept")
        store.write_text("not a folder")  # every read of the store now fails
        assert not await web.dependencies.check(BLOB_STORE)
        assert not web.ready
        assert set(web.dependencies.down()) == {BLOB_STORE}
        assert up(BLOB_STORE) == 0
        store.unlink()
        kept.rename(store)
        assert await web.dependencies.check(BLOB_STORE)
        assert web.ready
    finally:
        await web.stop()
