"""The human review queue as state: claims keep two reviewers off one item, reports count
once per reporter, and thresholds and severe reasons say when a person and an unpublish are
needed. (Rebuilding it from Kafka is in test_web.py.)"""

from __future__ import annotations

import dataclasses
from dataclasses import astuple

import pytest

from alive.reasons import REPORT_REASONS, SEVERE_REPORT_REASONS, ReasonCode
from alive.v1.events_pb2 import (
    PublishedVideo,
    ReviewDecision,
    ReviewItem,
    ReviewOutcome,
    Unpublished,
    UserReport,
)
from services.review.web.queue import ClaimRefused, ReportActions, ReportPolicy, ReviewQueue

POLICY = ReportPolicy(threshold=3, severe=frozenset(SEVERE_REPORT_REASONS))
MINUTE = 60_000
NOTHING = ReportActions(None, [])


def queue_with(*job_ids: str) -> ReviewQueue:
    queue = ReviewQueue(POLICY)
    for n, job_id in enumerate(job_ids):
        queue.add_item(ReviewItem(job_id=job_id, queued_at_ms=1000 + n, origin="publish"))
    return queue


def test_items_wait_oldest_first_and_filter_by_reason() -> None:
    queue = ReviewQueue(POLICY)
    held = {"origin": "publish"}
    queue.add_item(ReviewItem(job_id="b", queued_at_ms=20, reason_codes=["REVIEW_SAMPLED"], **held))
    queue.add_item(ReviewItem(job_id="a", queued_at_ms=10, reason_codes=["REAL_PERSON"], **held))
    queue.add_item(ReviewItem(job_id="a", queued_at_ms=30, **held))  # redelivered: keeps its age
    assert [i.job_id for i in queue.open_items()] == ["a", "b"]
    assert [i.job_id for i in queue.open_items("REVIEW_SAMPLED")] == ["b"]
    assert queue.oldest_age_ms(110) == 100
    queue.add_decision(ReviewDecision(job_id="a", origin="publish"))
    assert [i.job_id for i in queue.open_items()] == ["b"]


def test_two_reviewers_cannot_both_decide_one_item() -> None:
    queue = queue_with("j")
    queue.claim("publish/j", "ana", now_ms=0, timeout_ms=MINUTE)
    with pytest.raises(ClaimRefused, match="claimed by ana"):
        queue.claim("publish/j", "ben", now_ms=1, timeout_ms=MINUTE)
    with pytest.raises(ClaimRefused):
        queue.begin_decision("publish/j", "ben", now_ms=2)  # without the claim
    queue.begin_decision("publish/j", "ana", now_ms=2)
    # While ana's decision is being sent, neither a second decision nor a claim gets in.
    with pytest.raises(ClaimRefused, match="already decided"):
        queue.begin_decision("publish/j", "ana", now_ms=3)
    with pytest.raises(ClaimRefused, match="already decided"):
        queue.claim("publish/j", "ben", now_ms=3, timeout_ms=MINUTE)


def test_a_claim_runs_out_and_another_reviewer_may_take_the_item() -> None:
    queue = queue_with("j")
    queue.claim("publish/j", "ana", now_ms=0, timeout_ms=MINUTE)
    queue.claim("publish/j", "ben", now_ms=MINUTE + 1, timeout_ms=MINUTE)
    with pytest.raises(ClaimRefused):
        queue.begin_decision("publish/j", "ana", now_ms=MINUTE + 2)  # hers ran out
    assert queue.begin_decision("publish/j", "ben", now_ms=MINUTE + 2).job_id == "j"


def test_a_decision_that_could_not_be_sent_leaves_the_item_open() -> None:
    queue = queue_with("j")
    queue.claim("publish/j", "ana", now_ms=0, timeout_ms=MINUTE)
    queue.begin_decision("publish/j", "ana", now_ms=1)
    queue.abandon_decision("publish/j")
    assert queue.begin_decision("publish/j", "ana", now_ms=2).job_id == "j"


def report(
    job_id: str, reporter: str, reason: str = ReasonCode.REPORTED_SPAM, at_ms: int = 0
) -> UserReport:
    return UserReport(job_id=job_id, reporter=reporter, reason_code=reason, at_ms=at_ms)


def test_reports_count_once_per_reporter_and_queue_the_video_at_the_threshold() -> None:
    queue = ReviewQueue(POLICY)
    for reporter in ("u1", "u1", "u2", "u2"):
        queue.add_report(report("v", reporter))
    assert queue.report_actions("v") == NOTHING  # two reporters, threshold three
    queue.add_report(report("v", "u3", ReasonCode.REPORTED_HATE))
    item, unpublish = astuple(queue.report_actions("v"))
    assert item is not None and item.origin == "report"
    assert ReasonCode.REPORTED_THRESHOLD in item.reason_codes
    assert not unpublish  # not severe: a person decides first
    queue.add_item(item)
    assert queue.report_actions("v") == NOTHING  # queued once


@pytest.mark.parametrize("reason", sorted(SEVERE_REPORT_REASONS))
def test_one_severe_report_queues_and_unpublishes_at_once(reason: str) -> None:
    queue = ReviewQueue(POLICY)
    queue.add_report(report("v", "u1", reason))
    item, unpublish = astuple(queue.report_actions("v"))
    assert item is not None and list(item.reason_codes) == [reason]
    assert unpublish == [reason]
    queue.add_unpublished(Unpublished(job_id="v"))
    assert not queue.report_actions("v").unpublish  # once


def test_reports_after_an_approval_before_publishing_still_count() -> None:
    queue = queue_with("v")
    queue.add_decision(ReviewDecision(job_id="v", origin="publish"))
    queue.add_report(report("v", "u1", ReasonCode.REPORTED_SELF_HARM))
    item, unpublish = astuple(queue.report_actions("v"))
    assert item is not None and item.origin == "report" and unpublish
    queue.add_item(item)
    assert [(i.origin, i.job_id) for i in queue.open_items()] == [("report", "v")]


def decide_report(queue: ReviewQueue, job_id: str, at_ms: int) -> ReviewItem:
    """Queues what the reports call for and records a reviewer's approval of it."""
    item = queue.report_actions(job_id).item
    assert item is not None
    item.queued_at_ms = at_ms
    queue.add_item(item)
    queue.add_decision(
        ReviewDecision(
            job_id=job_id,
            origin="report",
            policy_version=item.policy_version,
            decided_at_ms=at_ms + 1,
            outcome=ReviewOutcome.REVIEW_APPROVE,
        )
    )
    assert not queue.open_items()
    return item


def test_a_reviewers_decision_on_a_reported_video_is_final_for_its_policy_version() -> None:
    queue = ReviewQueue(POLICY)
    queue.add_report(report("v", "u1", ReasonCode.REPORTED_SEXUAL_MINOR, at_ms=10))
    decide_report(queue, "v", at_ms=20)
    for n in range(5):
        queue.add_report(report("v", f"more-{n}", ReasonCode.REPORTED_SEXUAL_MINOR, at_ms=30))
    assert queue.report_actions("v") == NOTHING


def test_a_new_policy_version_lets_reports_after_the_decision_reopen_it() -> None:
    queue = ReviewQueue(dataclasses.replace(POLICY, policy_version="v1"))
    for n in range(3):
        queue.add_report(report("v", f"u{n}", ReasonCode.REPORTED_SPAM, at_ms=10))
    first = decide_report(queue, "v", at_ms=20)
    assert first.policy_version == "v1"

    queue.policy = dataclasses.replace(queue.policy, policy_version="v2")
    # The reports the decision answered do not count again; one more is under the threshold.
    assert queue.report_actions("v") == NOTHING
    queue.add_report(report("v", "u0", ReasonCode.REPORTED_HATE, at_ms=40))  # u0 again, later
    queue.add_report(report("v", "u7", ReasonCode.REPORTED_SPAM, at_ms=41))
    assert queue.report_actions("v") == NOTHING
    queue.add_report(report("v", "u8", ReasonCode.REPORTED_SPAM, at_ms=42))
    again = queue.report_actions("v").item
    assert again is not None and again.policy_version == "v2"
    again.queued_at_ms = 50
    queue.add_item(again)
    queue.add_item(first)  # replayed out of order: the newer round stays
    (waiting,) = queue.open_items()
    assert (waiting.policy_version, waiting.queued_at_ms) == ("v2", 50)
    assert queue.decision_on("report/v") is None  # decided under v1, open under v2


def test_a_video_is_down_until_it_is_published_again() -> None:
    queue = ReviewQueue(POLICY)
    assert not queue.taken_down("v")
    queue.add_published(PublishedVideo(job_id="v", published_at_ms=10))
    queue.add_unpublished(Unpublished(job_id="v", at_ms=20))
    assert queue.taken_down("v")
    queue.add_published(PublishedVideo(job_id="v", published_at_ms=30))
    queue.add_published(PublishedVideo(job_id="v", published_at_ms=10))  # replayed
    assert not queue.taken_down("v")


def test_a_report_outside_the_vocabulary_is_not_counted() -> None:
    queue = ReviewQueue(POLICY)
    for n in range(5):
        queue.add_report(report("v", f"u{n}", ReasonCode.REVIEW_REJECTED))
    assert queue.report_actions("v") == NOTHING
    assert ReasonCode.REPORTED_THRESHOLD not in REPORT_REASONS
