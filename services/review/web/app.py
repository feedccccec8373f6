"""The review web app: reviewers work through the human review queue in a browser.

Server-rendered pages (Starlette + Jinja2, a little JavaScript for keyboard shortcuts). A
reviewer signs in, sees the queue oldest first (filter by reason), opens an item, which
claims it for ``claim_timeout_s``, watches the video in the page beside the source photo,
the prompt (shown here and nowhere else) and each checkpoint's decision, reasons and scores,
and approves or rejects with a reason code and a note.

A decision is signed (services/review/decisions.py) and written to alive.review-decisions
(the audit log) before anything else; then it is carried out: for a publish request held by
the review service, a PublishRequest carrying the decision goes back to it (it publishes or
vetoes, once: its ledger); for a reported video, a rejection unpublishes it
(alive.unpublished) and an approval of one that reports took down publishes it again
(alive.published). At start the queue is rebuilt from Kafka, and a decision recorded but
not yet carried out (the app stopped in between) is carried out then.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message
from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from alive.blobs import BlobError, BlobStore, StageLedger
from alive.pipeline import (
    PIPELINE,
    PUBLISH_REQUESTS,
    PUBLISHED,
    REVIEW,
    REVIEW_DECISIONS,
    REVIEW_QUEUE,
    UNPUBLISHED,
    Topic,
)
from alive.reasons import REVIEWER_REASONS, ReasonCode
from alive.settings import ServiceSettings
from alive.telemetry import headers_with_trace
from alive.v1.events_pb2 import (
    Job,
    PublishRequest,
    ReviewDecision,
    ReviewItem,
    ReviewOutcome,
    StageOutcome,
    Unpublished,
    Verdict,
)
from services.review import decisions
from services.review.stage import READY_STAGE, published_video
from services.review.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Accounts,
    Session,
    Sessions,
    same_token,
)
from services.review.web.queue import (
    ORIGIN_PUBLISH,
    ORIGIN_REPORT,
    ClaimRefused,
    ReviewQueue,
    item_key,
    key_of,
)
from services.review.web.settings import ReviewWebSettings

log = logging.getLogger(__name__)
tracer = trace.get_tracer("alive.review_web")
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
REJECT_REASONS = sorted(REVIEWER_REASONS)
NOT_VIA_PROXY = "sign in through the company's single sign-on"


def now_ms() -> int:
    return int(time.time() * 1000)


class ReviewMetrics:
    def __init__(self, registry: CollectorRegistry, queue: ReviewQueue) -> None:
        depth = Gauge("alive_review_queue_depth", "Items waiting for a person.", registry=registry)
        depth.set_function(lambda: len(queue.open_items()))
        oldest = Gauge(
            "alive_review_queue_oldest_age_seconds",
            "Age of the oldest item waiting for a person.",
            registry=registry,
        )
        oldest.set_function(lambda: queue.oldest_age_ms(now_ms()) / 1000)
        self.decisions = Counter(
            "alive_review_decisions",
            "Decisions, by reviewer and outcome.",
            ["reviewer", "outcome"],
            registry=registry,
        )
        self.time_to_decision = Histogram(
            "alive_review_time_to_decision_seconds",
            "From an item entering the queue to its decision.",
            buckets=(10, 30, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
            registry=registry,
        )


@dataclass(frozen=True)
class CheckpointView:
    stage: str
    verdict: str
    reason_codes: list[str]
    scores: Mapping[str, float]
    versions: Mapping[str, str]


class ReviewDesk:
    """The queue and everything a decision touches: the blob store (what reviewers see), the
    producer (what decisions send) and the signing key."""

    def __init__(
        self,
        settings: ReviewWebSettings,
        common: ServiceSettings,
        queue: ReviewQueue,
        blobs: BlobStore,
        producer: AIOKafkaProducer,
        key: Ed25519PrivateKey,
        metrics: ReviewMetrics,
    ) -> None:
        self.settings = settings
        self.common = common
        self.queue = queue
        self.blobs = blobs
        self.ledger = StageLedger(blobs)
        self.producer = producer
        self.key = key
        self.metrics = metrics

    def job(self, job_id: str, stage: str = READY_STAGE) -> Job | None:
        """The job as ``stage`` passed it (READY: what the checkpoints saw)."""
        try:
            record = self.ledger.get(stage, job_id)
        except BlobError:
            return None
        outcome = StageOutcome.FromString(record) if record else None
        return outcome.passed if outcome is not None and outcome.HasField("passed") else None

    def prompt(self, job: Job) -> str:
        """The job's prompt from its blob (the ledger keeps none: docs/privacy.md), checked
        against the digest the prompt checkpoint attested; a plain note once it is gone."""
        if job.prompt:  # a record written before prompts left the ledger
            return job.prompt
        try:
            return self.blobs.get_bytes(job.prompt_ref).decode()
        except (BlobError, UnicodeDecodeError):
            return "(the prompt is no longer kept)"

    async def _send(self, topic: Topic[Any], key: str, message: Message) -> None:
        await self.producer.send_and_wait(
            self.common.topic(topic),
            message.SerializeToString(),
            key=key.encode(),
            headers=headers_with_trace(),
        )

    async def decide(
        self, key: str, reviewer: str, outcome: ReviewOutcome.ValueType, reason: str, note: str
    ) -> ReviewDecision:
        """Records and carries out a decision on the item ``key``; raises ClaimRefused when
        the reviewer may not decide it (no live claim, or decided already)."""
        item = self.queue.begin_decision(key, reviewer, now_ms())
        with tracer.start_as_current_span(
            "review.decide", kind=trace.SpanKind.SERVER, attributes={"alive.job_id": item.job_id}
        ):
            return await self._decide(key, item, reviewer, outcome, reason, note)

    async def _decide(
        self,
        key: str,
        item: ReviewItem,
        reviewer: str,
        outcome: ReviewOutcome.ValueType,
        reason: str,
        note: str,
    ) -> ReviewDecision:
        job_id = item.job_id
        try:
            job = self.job(job_id)
            # A reported video is decided under the policy of its round; a held publish
            # request under the one its checkpoints applied.
            policy = item.policy_version if item.origin == ORIGIN_REPORT else _policy_version(job)
            decision = decisions.sign(
                ReviewDecision(
                    decision_id=str(uuid.uuid4()),
                    job_id=job_id,
                    reviewer=reviewer,
                    outcome=outcome,
                    reason_code=reason if outcome == ReviewOutcome.REVIEW_REJECT else "",
                    note=note,
                    decided_at_ms=now_ms(),
                    queued_at_ms=item.queued_at_ms,
                    video_sha256=item.video_sha256,
                    origin=item.origin,
                    policy_version=policy,
                ),
                self.key,
            )
            await self._send(REVIEW_DECISIONS, job_id, decision)  # the audit log first
        except BaseException:
            self.queue.abandon_decision(key)
            raise
        self.queue.add_decision(decision)
        outcome_name = "approve" if outcome == ReviewOutcome.REVIEW_APPROVE else "reject"
        self.metrics.decisions.labels(reviewer, outcome_name).inc()
        self.metrics.time_to_decision.observe(
            max(0, decision.decided_at_ms - decision.queued_at_ms) / 1000
        )
        log.info(
            "decided",
            extra={"job_id": job_id, "reviewer": reviewer, "outcome": outcome_name},
        )
        await self._carry_out(decision)
        return decision

    async def _carry_out(self, decision: ReviewDecision) -> None:
        if decision.origin == ORIGIN_PUBLISH:
            request = PublishRequest(
                job_id=decision.job_id,
                requested_by=f"review:{decision.reviewer}",
                requested_at_ms=now_ms(),
                decision=decision,
            )
            await self._send(PUBLISH_REQUESTS, decision.job_id, request)
        elif decision.outcome == ReviewOutcome.REVIEW_REJECT:
            await self._unpublish(decision.job_id, [ReasonCode.REVIEW_REJECTED])
        else:
            await self._republish(decision.job_id)

    async def _unpublish(self, job_id: str, reasons: list[str]) -> None:
        if self.queue.taken_down(job_id):
            return
        published = self.job(job_id)
        event = Unpublished(
            job_id=job_id,
            creator_id=published.creator_id if published else "",
            reason_codes=reasons,  # never a reporter
            at_ms=now_ms(),
        )
        await self._send(UNPUBLISHED, job_id, event)
        self.queue.add_unpublished(event)
        log.info("unpublished", extra={"job_id": job_id, "reason_codes": reasons})

    async def _republish(self, job_id: str) -> None:
        """A reviewer approved a reported video that reports took down: it goes live again,
        as review published it (its signed review statement; a Story service takes the
        newer of alive.published and alive.unpublished)."""
        published = self.job(job_id, REVIEW.name)
        if not self.queue.taken_down(job_id) or published is None:
            return
        event = published_video(published)
        await self._send(PUBLISHED, job_id, event)
        self.queue.add_published(event)
        log.info("published again", extra={"job_id": job_id})

    async def on_report(self, job_id: str) -> None:
        """A report arrived (or the queue was rebuilt): queue the video for a person and
        unpublish it at once, as the report policy says."""
        actions = self.queue.report_actions(job_id)
        # The job as the checkpoints passed it (review publishes the same video, and may not
        # have written its own record yet when the first report arrives).
        published = self.job(job_id)
        if published is None:
            log.warning("report of an unknown job", extra={"job_id": job_id})
            return
        if actions.unpublish:
            await self._unpublish(job_id, actions.unpublish)
        item = actions.item
        if item is not None:
            item.creator_id = published.creator_id
            item.video_sha256 = published.video.sha256
            item.queued_at_ms = now_ms()
            await self._send(REVIEW_QUEUE, job_id, item)
            self.queue.add_item(item)

    async def on_caught_up(self) -> None:
        """After the replay at start: carry out what the topics show is still owed."""
        for key in list(self.queue.items):
            decision = self.queue.decision_on(key)  # the item's current round
            if decision is None:
                continue
            acted = self.ledger.get(REVIEW.name, decision.job_id) is not None
            if decision.origin == ORIGIN_PUBLISH and acted:
                continue  # the review service has acted on it
            await self._carry_out(decision)  # a report's: (un)publishing twice is a no-op
        for job_id in self.queue.reported_jobs():
            await self.on_report(job_id)

    def checkpoints(self, job: Job) -> list[CheckpointView]:
        attested = {a.stage: a for a in job.attestations}
        views = []
        for record in job.stages:
            if not PIPELINE.is_checkpoint(record.stage):
                continue
            signed = attested.get(record.stage)
            verdict = signed.verdict if signed is not None else record.verdict
            views.append(
                CheckpointView(
                    record.stage,
                    Verdict.Name(verdict),
                    list(record.reason_codes),
                    dict(record.scores),
                    dict(record.versions),
                )
            )
        return views


def _policy_version(job: Job | None) -> str:
    """The moderation policy the job was judged under: the video checkpoint's signed one."""
    if job is None:
        return ""
    for attestation in reversed(job.attestations):
        if attestation.versions.get("policy"):
            return attestation.versions["policy"]
    return ""


def make_app(desk: ReviewDesk, accounts: Accounts, sessions: Sessions) -> Starlette:
    settings = desk.settings

    def session_of(request: Request) -> Session | None:
        header = settings.trusted_user_header
        if header is not None:
            user = request.headers.get(header)
            if not user:
                return None
            # The proxy authenticated the user; a session keeps the CSRF token.
            sid = request.cookies.get(SESSION_COOKIE)
            current = sessions.get(sid, now_ms())
            if current is not None and current.reviewer == user:
                return current
            return None
        return sessions.get(request.cookies.get(SESSION_COOKIE), now_ms())

    def to_login() -> Response:
        return RedirectResponse("/login", status_code=303)

    def set_cookie(response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            httponly=True,
            samesite="strict",
            secure=settings.secure_cookies,
        )

    async def login_page(request: Request) -> Response:
        header = settings.trusted_user_header
        if header is not None:  # the proxy signs reviewers in; no passwords here
            if not request.headers.get(header):
                return PlainTextResponse(NOT_VIA_PROXY, status_code=401)
            sid, _ = sessions.open(request.headers[header], now_ms())
            response: Response = RedirectResponse("/", status_code=303)
            set_cookie(response, SESSION_COOKIE, sid, settings.session_ttl_s)
            return response
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or uuid.uuid4().hex
        response = TEMPLATES.TemplateResponse(
            request, "login.html", {"csrf": token, "error": request.query_params.get("error")}
        )
        set_cookie(response, LOGIN_CSRF_COOKIE, token, 600)
        return response

    async def login(request: Request) -> Response:
        if settings.trusted_user_header is not None:
            return PlainTextResponse(NOT_VIA_PROXY, status_code=401)
        form = await request.form()
        if not same_token(request.cookies.get(LOGIN_CSRF_COOKIE, ""), _field(form, "csrf")):
            return PlainTextResponse("CSRF check failed", status_code=403)
        name = _field(form, "name") or ""
        if not await asyncio.to_thread(accounts.check, name, _field(form, "password") or ""):
            log.warning("sign-in refused", extra={"reviewer": name[:64]})
            return RedirectResponse("/login?error=1", status_code=303)
        sid, _ = sessions.open(name, now_ms())
        response = RedirectResponse("/", status_code=303)
        set_cookie(response, SESSION_COOKIE, sid, settings.session_ttl_s)
        response.delete_cookie(LOGIN_CSRF_COOKIE)
        log.info("signed in", extra={"reviewer": name})
        return response

    async def logout(request: Request) -> Response:
        session = session_of(request)
        form = await request.form()
        if session is None or not same_token(session.csrf, _field(form, "csrf")):
            return PlainTextResponse("CSRF check failed", status_code=403)
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = to_login()
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def queue_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        reason = request.query_params.get("reason") or None
        at = now_ms()
        items = [
            {
                "item": i,
                "age_s": (at - i.queued_at_ms) // 1000,
                "key": key_of(i),
                "claim": desk.queue.live_claim(key_of(i), at),
            }
            for i in desk.queue.open_items(reason)
        ]
        return TEMPLATES.TemplateResponse(
            request,
            "queue.html",
            {
                "session": session,
                "items": items,
                "reasons": desk.queue.reasons(),
                "reason": reason,
            },
        )

    async def item_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        key = item_key(request.path_params["origin"], request.path_params["job_id"])
        item = desk.queue.items.get(key)
        job = desk.job(item.job_id) if item is not None else None
        if item is None or job is None:
            return PlainTextResponse("no such item", status_code=404)
        refused = None
        claim = None
        try:
            claim = desk.queue.claim(
                key, session.reviewer, now_ms(), settings.claim_timeout_s * 1000
            )
        except ClaimRefused as exc:
            refused = str(exc)
        following = [key_of(i) for i in desk.queue.open_items() if key_of(i) != key]
        return TEMPLATES.TemplateResponse(
            request,
            "item.html",
            {
                "session": session,
                "item": item,
                "key": key,
                "job": job,
                "prompt": await asyncio.to_thread(desk.prompt, job),
                "checkpoints": desk.checkpoints(job),
                "claim": claim,
                "refused": refused,
                "decision": desk.queue.decision_on(key),
                "approve": ReviewOutcome.REVIEW_APPROVE,
                "reject_reasons": REJECT_REASONS,
                "next_job": following[0] if following else None,
            },
        )

    async def decide(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return to_login()
        form = await request.form()
        if not same_token(session.csrf, _field(form, "csrf")):
            return PlainTextResponse("CSRF check failed", status_code=403)
        key = item_key(request.path_params["origin"], request.path_params["job_id"])
        action = _field(form, "outcome")
        reason = _field(form, "reason") or ""
        note = (_field(form, "note") or "")[:2000]
        if action not in ("approve", "reject"):
            return PlainTextResponse("outcome must be approve or reject", status_code=400)
        outcome = (
            ReviewOutcome.REVIEW_APPROVE if action == "approve" else ReviewOutcome.REVIEW_REJECT
        )
        if outcome == ReviewOutcome.REVIEW_REJECT and reason not in REJECT_REASONS:
            return PlainTextResponse("a rejection needs a reason code", status_code=400)
        try:
            await desk.decide(key, session.reviewer, outcome, reason, note)
        except ClaimRefused as exc:
            return PlainTextResponse(f"not decided: {exc}", status_code=409)
        following = desk.queue.open_items()
        target = f"/items/{key_of(following[0])}" if following else "/"
        return RedirectResponse(target, status_code=303)

    def media(subject: str) -> Any:
        async def serve(request: Request) -> Response:
            if session_of(request) is None:
                return PlainTextResponse("sign in", status_code=401)
            key = item_key(request.path_params["origin"], request.path_params["job_id"])
            item = desk.queue.items.get(key)
            job = desk.job(item.job_id) if item is not None else None
            if job is None:
                return PlainTextResponse("no such item", status_code=404)
            ref = job.video if subject == "video" else job.photo
            # Checked against its sha256; an object store's copy lives until it is sent.
            copy = desk.blobs.local_copy(ref)
            try:
                path = await asyncio.to_thread(copy.__enter__)
            except BlobError as exc:
                return PlainTextResponse(f"{exc.reason_code}", status_code=410)
            return FileResponse(
                path,
                media_type=ref.content_type,
                headers={"Cache-Control": "no-store"},
                background=BackgroundTask(copy.__exit__, None, None, None),
            )

        return serve

    app = Starlette(
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_security_headers)],
        routes=[
            Route("/", queue_page),
            Route("/login", login_page, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/items/{origin}/{job_id}", item_page),
            Route("/items/{origin}/{job_id}/decision", decide, methods=["POST"]),
            Route("/items/{origin}/{job_id}/video", media("video")),
            Route("/items/{origin}/{job_id}/photo", media("photo")),
            Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static"))),
        ],
    )

    return app


async def _security_headers(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Only this app's own scripts, styles and media; never framed."""
    response = await call_next(request)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; media-src 'self'; img-src 'self'; script-src 'self'; "
        "style-src 'self'; frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None
