"""The human review queue as state: claims keep two reviewers off one item, reports count
once per reporter, and thresholds and severe reasons say when a person and an unpublish are
needed. (Rebuilding it from Kafka is in test_web.py.)"""

from __future__ import annotations

from dataclasses import astuple

import pytest

from alive.reasons import REPORT_REASONS, SEVERE_REPORT_REASONS, ReasonCode
from alive.v1.events_pb2 import ReviewDecision, ReviewItem, Unpublished, UserReport
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


def report(job_id: str, reporter: str, reason: str = ReasonCode.REPORTED_SPAM) -> UserReport:
    return UserReport(job_id=job_id, reporter=reporter, reason_code=reason)


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


def test_a_reviewers_decision_on_a_reported_video_is_final() -> None:
    queue = ReviewQueue(POLICY)
    queue.add_report(report("v", "u1", ReasonCode.REPORTED_SEXUAL_MINOR))
    queue.add_decision(ReviewDecision(job_id="v", origin="report"))
    for n in range(5):
        queue.add_report(report("v", f"more-{n}", ReasonCode.REPORTED_SEXUAL_MINOR))
    assert queue.report_actions("v") == NOTHING


def test_a_report_outside_the_vocabulary_is_not_counted() -> None:
    queue = ReviewQueue(POLICY)
    for n in range(5):
        queue.add_report(report("v", f"u{n}", ReasonCode.REVIEW_REJECTED))
    assert queue.report_actions("v") == NOTHING
    assert ReasonCode.REPORTED_THRESHOLD not in REPORT_REASONS
