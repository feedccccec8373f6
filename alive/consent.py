"""Training use: whether a job's photo and prompt may be used to improve models.

Each request carries the person's choice (``training_use_consent``; absent means no). Ingest
records it on the job and signs it as a score of its attestation (TRAINING_CONSENT_SCORE),
and provenance writes it into the video's C2PA manifest. Alive exports nothing for training
today. Any export that is ever written calls ``may_use_for_training`` for each job and takes
nothing from a job it says no for (docs/privacy.md).
"""

from __future__ import annotations

from alive.attestation import Keyring, signed_scores
from alive.pipeline import INGEST
from alive.v1.events_pb2 import Job

# The score of ingest's attestation that records the person's choice: 1.0 yes, 0.0 no.
TRAINING_CONSENT_SCORE = "training_use_consent"


def consent_score(consented: bool) -> float:
    return 1.0 if consented else 0.0


def may_use_for_training(job: Job, keyring: Keyring) -> bool:
    """Whether the job's photo and prompt may be used to improve models: only when the
    person said yes, as the job records it and as ingest signed it. A job whose ingest
    attestation is missing, forged or made for other bytes, or that says no anywhere, is a
    no; so is a job erased since (its ledger record and blobs are gone, there is no job to
    pass here)."""
    if not job.training_use_consent:
        return False
    if keyring.check(job, (INGEST.name,)) is not None:
        return False
    return signed_scores(job, INGEST.name).get(TRAINING_CONSENT_SCORE) == 1.0
