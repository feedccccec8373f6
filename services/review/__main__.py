"""Runs the review service, and beside it the retention sweeper (alive/retention.py): the
review service is where a video's life ends (published, or not), so retention runs there."""

from alive.retention import RetentionMetrics, RetentionService, RetentionSweeper
from alive.service import ServiceRuntime, serve
from services.review.settings import ReviewSettings
from services.review.stage import ReviewStage


def build(
    own: ReviewSettings, runtime: ServiceRuntime
) -> tuple[ReviewStage, list[RetentionService]]:
    sweeper = RetentionSweeper(
        runtime.blobs, own.retention, RetentionMetrics(runtime.metrics.registry)
    )
    retention = RetentionService(runtime.settings, sweeper, client_id="review-retention")
    return ReviewStage(own, runtime.blobs, runtime.ledger), [retention]


if __name__ == "__main__":
    serve(ReviewStage, ReviewSettings(), build)
