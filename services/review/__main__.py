"""Runs the review service."""

from alive.service import serve
from services.review.settings import ReviewSettings
from services.review.stage import ReviewStage

if __name__ == "__main__":
    serve(
        ReviewStage, ReviewSettings(), lambda own, rt: (ReviewStage(own, rt.blobs, rt.ledger), [])
    )
