"""The human review queue as state: items waiting for a person, claims, decisions, reports.

Everything here is rebuilt from Kafka at start (alive.review-queue, alive.review-decisions,
alive.reports, alive.published, alive.unpublished) by applying their records in any order, so
a restart loses nothing; ``report_actions`` then says what the topics show crossed a threshold
but is not yet carried out. No Kafka client here: services/review/web/app.py feeds it and sends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alive.reasons import REPORT_REASONS, ReasonCode
from alive.v1.events_pb2 import (
    PublishedVideo,
    ReviewDecision,
    ReviewItem,
    Unpublished,
    UserReport,
)

ORIGIN_PUBLISH = "publish"
ORIGIN_REPORT = "report"


def item_key(origin: str, job_id: str) -> str:
    """One job may wait twice: held before publishing, and later reported. Each is an item
    of its own, decided on its own."""
    return f"{origin}/{job_id}"


def key_of(message: ReviewItem | ReviewDecision) -> str:
    return item_key(message.origin, message.job_id)


def decision_key(message: ReviewItem | ReviewDecision) -> str:
    """What a decision is final for. A reported video is decided once per policy version: a
    new version may judge it anew. A held publish request is decided once, for good."""
    if message.origin == ORIGIN_REPORT:
        return f"{key_of(message)}@{message.policy_version}"
    return key_of(message)


@dataclass
class Claim:
    reviewer: str
    expires_at_ms: int


@dataclass(frozen=True)
class ReportPolicy:
    """When reports send a published video to a person, and when they unpublish it at once.
    ``policy_version`` is the moderation policy reviewers apply now: a decision on a
    reported video is final for the version it was made under (empty: final for good)."""

    threshold: int
    severe: frozenset[str]
    policy_version: str = ""


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
        # Per item key, the newest round (a reported video decided under an older policy
        # version and reported again is queued again).
        self.items: dict[str, ReviewItem] = {}
        self.decisions: dict[str, ReviewDecision] = {}  # by decision_key
        # Per reported job, each reporter's latest report.
        self.reports: dict[str, dict[str, UserReport]] = {}
        # When each job last went live and was last taken down (alive.published and
        # alive.unpublished): it is down while the second is the later.
        self.published_at: dict[str, int] = {}
        self.unpublished_at: dict[str, int] = {}
        self.claims: dict[str, Claim] = {}
        # Jobs whose decision is being sent: nobody else may decide them meanwhile.
        self._deciding: set[str] = set()

    # Applying records (replay and live alike; each is idempotent and order-free).

    def add_item(self, item: ReviewItem) -> None:
        old = self.items.get(key_of(item))
        if old is None:
            self.items[key_of(item)] = item
        elif old.policy_version != item.policy_version:
            if item.queued_at_ms > old.queued_at_ms:  # the newer round
                self.items[key_of(item)] = item
        elif item.queued_at_ms < old.queued_at_ms:
            self.items[key_of(item)] = item  # a re-queued job keeps its first age

    def add_decision(self, decision: ReviewDecision) -> None:
        self.decisions.setdefault(decision_key(decision), decision)  # the first is final
        self.claims.pop(key_of(decision), None)
        self._deciding.discard(key_of(decision))

    def add_report(self, report: UserReport) -> None:
        if report.reason_code not in REPORT_REASONS:
            return  # the API refuses these; one from elsewhere is ignored, not counted
        by_reporter = self.reports.setdefault(report.job_id, {})
        old = by_reporter.get(report.reporter)
        if old is None or report.at_ms > old.at_ms:
            by_reporter[report.reporter] = report  # one per reporter and video

    def add_published(self, event: PublishedVideo) -> None:
        at = max(self.published_at.get(event.job_id, 0), event.published_at_ms)
        self.published_at[event.job_id] = at

    def add_unpublished(self, event: Unpublished) -> None:
        at = max(self.unpublished_at.get(event.job_id, 0), event.at_ms)
        self.unpublished_at[event.job_id] = at

    def taken_down(self, job_id: str) -> bool:
        """Unpublished, and not published again since."""
        down = self.unpublished_at.get(job_id)
        return down is not None and down >= self.published_at.get(job_id, 0)

    def decision_on(self, key: str) -> ReviewDecision | None:
        """The decision on the item's current round, if it has one."""
        item = self.items.get(key)
        return self.decisions.get(decision_key(item)) if item is not None else None

    def forget_job(self, job_id: str) -> None:
        """Drops everything about an erased job: its items, decisions, claims, reports."""
        for origin in (ORIGIN_PUBLISH, ORIGIN_REPORT):
            key = item_key(origin, job_id)
            self.items.pop(key, None)
            self.claims.pop(key, None)
            self._deciding.discard(key)
        self.decisions = {k: d for k, d in self.decisions.items() if d.job_id != job_id}
        self.reports.pop(job_id, None)
        self.published_at.pop(job_id, None)
        self.unpublished_at.pop(job_id, None)

    # What is waiting.

    def open_items(self, reason: str | None = None) -> list[ReviewItem]:
        """Undecided items, oldest first; with ``reason``, only those with that reason."""
        waiting = [
            i
            for i in self.items.values()
            if decision_key(i) not in self.decisions
            and (reason is None or reason in i.reason_codes)
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
        if key not in self.items:
            raise ClaimRefused("not in the queue")
        if self.decision_on(key) is not None or key in self._deciding:
            raise ClaimRefused("already decided")
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
        if self.decision_on(key) is not None or key in self._deciding:
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
        to unpublish it with now (empty: keep it up).

        A reviewer's decision on a reported video is final for the policy version it was
        made under: later reports change nothing until the version changes, and then only
        reports made after the decision count. (An approval before publishing is not such a
        decision: reports after it still count.)
        """
        current = self.items.get(item_key(ORIGIN_REPORT, job_id))
        since: int | None = None  # count every report
        if current is not None:
            decided = self.decisions.get(decision_key(current))
            if decided is None or current.policy_version == self.policy.policy_version:
                # Waiting for a person (unpublish at once if severe), or final.
                return ReportActions(None, self._severe(job_id, None) if decided is None else [])
            since = decided.decided_at_ms
        reports = [r for r in self.reports.get(job_id, {}).values() if _after(r, since)]
        severe = self._severe(job_id, since)
        enough = len(reports) >= self.policy.threshold
        if not (severe or enough):
            return ReportActions(None, [])
        codes = severe or sorted({r.reason_code for r in reports})
        if enough:
            codes = [*codes, ReasonCode.REPORTED_THRESHOLD]
        item = ReviewItem(
            job_id=job_id,
            reason_codes=codes,
            origin=ORIGIN_REPORT,
            policy_version=self.policy.policy_version,
        )
        return ReportActions(item, severe)

    def _severe(self, job_id: str, since_ms: int | None) -> list[str]:
        """Severe reasons reported after ``since_ms``, unless the video is down already."""
        if self.taken_down(job_id):
            return []
        reports = self.reports.get(job_id, {}).values()
        return sorted({r.reason_code for r in reports if _after(r, since_ms)} & self.policy.severe)

    def reported_jobs(self) -> Iterable[str]:
        return list(self.reports)


def _after(report: UserReport, since_ms: int | None) -> bool:
    return since_ms is None or report.at_ms > since_ms
