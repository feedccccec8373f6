"""The human review queue as state: items waiting for a person, claims, decisions, reports.

Everything here is rebuilt from Kafka at start (alive.review-queue, alive.review-decisions,
alive.reports, alive.unpublished) by applying their records in any order, so a restart loses
nothing; ``actions`` then says what the topics show was decided or crossed a threshold but not
yet carried out. No Kafka client here: services/review/web/app.py feeds it and sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alive.reasons import REPORT_REASONS, ReasonCode
from alive.v1.events_pb2 import ReviewDecision, ReviewItem, Unpublished, UserReport

ORIGIN_PUBLISH = "publish"
ORIGIN_REPORT = "report"


def item_key(origin: str, job_id: str) -> str:
    """One job may wait twice: held before publishing, and later reported. Each is an item
    of its own, decided on its own."""
    return f"{origin}/{job_id}"


def key_of(message: ReviewItem | ReviewDecision) -> str:
    return item_key(message.origin, message.job_id)


@dataclass
class Claim:
    reviewer: str
    expires_at_ms: int


@dataclass
class JobReports:
    reporters: set[str] = field(default_factory=set)
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportPolicy:
    """When reports send a published video to a person, and when they unpublish it at once."""

    threshold: int
    severe: frozenset[str]


@dataclass(frozen=True)
class ReportActions:
    """What reports of one video call for now."""

    item: ReviewItem | None  # queue it for a person
    unpublish: list[str]  # take it off Stories at once, for these severe reasons


class ClaimRefused(Exception):
    """Another reviewer holds the item, or it is decided: the message says which."""


class ReviewQueue:
    def __init__(self, policy: ReportPolicy) -> None:
        self.policy = policy
        self.items: dict[str, ReviewItem] = {}
        self.decisions: dict[str, ReviewDecision] = {}
        self.reports: dict[str, JobReports] = {}
        self.unpublished: set[str] = set()
        self.claims: dict[str, Claim] = {}
        # Jobs whose decision is being sent: nobody else may decide them meanwhile.
        self._deciding: set[str] = set()

    # Applying records (replay and live alike; each is idempotent).

    def add_item(self, item: ReviewItem) -> None:
        old = self.items.get(key_of(item))
        if old is None or item.queued_at_ms < old.queued_at_ms:
            self.items[key_of(item)] = item  # a re-queued job keeps its first age

    def add_decision(self, decision: ReviewDecision) -> None:
        key = key_of(decision)
        self.decisions.setdefault(key, decision)  # the first decision is final
        self.claims.pop(key, None)
        self._deciding.discard(key)

    def add_report(self, report: UserReport) -> None:
        if report.reason_code not in REPORT_REASONS:
            return  # the API refuses these; one from elsewhere is ignored, not counted
        reports = self.reports.setdefault(report.job_id, JobReports())
        if report.reporter in reports.reporters:
            return  # de-duplicated per reporter and job
        reports.reporters.add(report.reporter)
        reports.reasons[report.reason_code] = reports.reasons.get(report.reason_code, 0) + 1

    def add_unpublished(self, event: Unpublished) -> None:
        self.unpublished.add(event.job_id)

    def forget_job(self, job_id: str) -> None:
        """Drops everything about an erased job: its items, decisions, claims, reports."""
        keys = {item_key(origin, job_id) for origin in (ORIGIN_PUBLISH, ORIGIN_REPORT)}
        for key in keys:
            self.items.pop(key, None)
            self.decisions.pop(key, None)
            self.claims.pop(key, None)
            self._deciding.discard(key)
        self.reports.pop(job_id, None)
        self.unpublished.discard(job_id)

    # What is waiting.

    def open_items(self, reason: str | None = None) -> list[ReviewItem]:
        """Undecided items, oldest first; with ``reason``, only those with that reason."""
        waiting = [
            i
            for key, i in self.items.items()
            if key not in self.decisions and (reason is None or reason in i.reason_codes)
        ]
        return sorted(waiting, key=lambda i: (i.queued_at_ms, i.job_id))

    def reasons(self) -> list[str]:
        return sorted({r for i in self.open_items() for r in i.reason_codes})

    def oldest_age_ms(self, now_ms: int) -> int:
        items = self.open_items()
        return now_ms - items[0].queued_at_ms if items else 0

    # Claims: one reviewer per item at a time, for a while.

    def claim(self, key: str, reviewer: str, now_ms: int, timeout_ms: int) -> Claim:
        """Claims (or renews) the item for ``reviewer``; refused while another holds it."""
        if key in self.decisions or key in self._deciding:
            raise ClaimRefused("already decided")
        if key not in self.items:
            raise ClaimRefused("not in the queue")
        held = self.claims.get(key)
        if held is not None and held.reviewer != reviewer and held.expires_at_ms > now_ms:
            raise ClaimRefused(f"claimed by {held.reviewer}")
        claim = Claim(reviewer, now_ms + timeout_ms)
        self.claims[key] = claim
        return claim

    def live_claim(self, key: str, now_ms: int) -> Claim | None:
        held = self.claims.get(key)
        return held if held is not None and held.expires_at_ms > now_ms else None

    def begin_decision(self, key: str, reviewer: str, now_ms: int) -> ReviewItem:
        """Checks ``reviewer`` holds a live claim and reserves the item for the decision
        being sent. Synchronous: two requests on one event loop cannot both pass."""
        if key in self.decisions or key in self._deciding:
            raise ClaimRefused("already decided")
        held = self.claims.get(key)
        if held is None or held.reviewer != reviewer or held.expires_at_ms <= now_ms:
            raise ClaimRefused("claim the item first (yours expired or another holds it)")
        self._deciding.add(key)
        return self.items[key]

    def abandon_decision(self, key: str) -> None:
        """The decision could not be sent: the item is open again (the claim stays)."""
        self._deciding.discard(key)

    # What the topics say must still happen.

    def report_actions(self, job_id: str) -> ReportActions:
        """For a reported job: the item to queue (None: none needed) and the severe reasons
        to unpublish it with now (empty: keep it up). A reviewer's decision on a reported
        video is final: later reports change nothing. (An approval before publishing is not
        one: reports after it still count.)

        Partial: the issue asks that a decision be final *for its policy version*; a new
        policy version re-opening decided jobs is not written (decisions record the version).
        """
        reports = self.reports.get(job_id)
        key = item_key(ORIGIN_REPORT, job_id)
        if reports is None or key in self.decisions:
            return ReportActions(None, [])
        severe = sorted(r for r in reports.reasons if r in self.policy.severe)
        enough = len(reports.reporters) >= self.policy.threshold
        if not (severe or enough):
            return ReportActions(None, [])
        item = None
        if key not in self.items:
            codes = severe or sorted(reports.reasons)
            if enough:
                codes = [*codes, ReasonCode.REPORTED_THRESHOLD]
            item = ReviewItem(job_id=job_id, reason_codes=codes, origin=ORIGIN_REPORT)
        return ReportActions(item, [] if job_id in self.unpublished else severe)

    def reported_jobs(self) -> Iterable[str]:
        return list(self.reports)
