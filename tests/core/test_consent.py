"""Training use: a job may be used only when the person said yes, as the job records it and
as ingest signed it; the default, a forged yes and a missing signature are all no."""

from __future__ import annotations

from alive.consent import TRAINING_CONSENT_SCORE, consent_score, may_use_for_training
from alive.v1.events_pb2 import BlobRef, Job
from alive_tools.keys import StageKeys

KEYS = StageKeys()
KEYRING = KEYS.keyring("review")


def ingested(consented: bool, *, signed: bool | None = None) -> Job:
    """A job as ingest passes it on: the flag, and ingest's attestation with its score."""
    job = Job(
        job_id="j1",
        creator_id="c1",
        photo=BlobRef(sha256="ab" * 32),
        training_use_consent=consented,
    )
    said = consented if signed is None else signed
    return KEYS.attest(job, "ingest", scores={TRAINING_CONSENT_SCORE: consent_score(said)})


def test_a_job_whose_person_said_yes_may_be_used() -> None:
    assert may_use_for_training(ingested(True), KEYRING)


def test_by_default_no_job_may_be_used() -> None:
    assert not may_use_for_training(Job(job_id="j1"), KEYRING)
    assert not may_use_for_training(ingested(False), KEYRING)


def test_a_yes_that_ingest_did_not_sign_is_a_no() -> None:
    assert not may_use_for_training(ingested(True, signed=False), KEYRING)  # flag flipped
    unsigned = Job(job_id="j1", creator_id="c1", training_use_consent=True)
    assert not may_use_for_training(unsigned, KEYRING)
    swapped = ingested(True)
    swapped.photo.sha256 = "cd" * 32  # the attestation was made for another photo
    assert not may_use_for_training(swapped, KEYRING)
    forged = ingested(True)
    forged.attestations[-1].scores[TRAINING_CONSENT_SCORE] = 1.0
    forged.attestations[-1].signature = b"\0" * 64
    assert not may_use_for_training(forged, KEYRING)
