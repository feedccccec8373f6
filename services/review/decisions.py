"""Reviewers' decisions, signed: the review web app signs each decision with its Ed25519 key,
and the review service acts on a decision only if the signature verifies with a key it
trusts and the decision is about the job and video it holds.

Kafka ACLs let only the web app write alive.review-decisions, but decisions reach the review
service on alive.publish-requests, which ingest and other services also write: the signature
is what makes a forged approval worthless there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from alive.attestation import key_id, length_prefixed
from alive.reasons import REVIEWER_REASONS
from alive.v1.events_pb2 import ReviewDecision, ReviewOutcome

# Versioned so that a change of encoding can never make an old signature mean something new.
_DOMAIN = b"alive.review-decision.v1"


def signed_bytes(decision: ReviewDecision) -> bytes:
    """Every field but key_id and signature, each length-prefixed."""
    fields = [
        decision.decision_id,
        decision.job_id,
        decision.reviewer,
        ReviewOutcome.Name(decision.outcome),
        decision.reason_code,
        decision.note,
        str(decision.decided_at_ms),
        str(decision.queued_at_ms),
        decision.video_sha256,
        decision.origin,
        decision.policy_version,
    ]
    return length_prefixed(_DOMAIN, fields)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def load_public_keys(paths: Iterable[Path]) -> dict[str, Ed25519PublicKey]:
    """Public keys (PEM) by key id; several during a rotation."""
    keys: dict[str, Ed25519PublicKey] = {}
    for path in paths:
        public = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(public, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        keys[key_id(public)] = public
    return keys


def sign(decision: ReviewDecision, key: Ed25519PrivateKey) -> ReviewDecision:
    decision.key_id = key_id(key.public_key())
    decision.signature = key.sign(signed_bytes(decision))
    return decision


def problem(
    decision: ReviewDecision,
    trusted: dict[str, Ed25519PublicKey],
    job_id: str,
    video_sha256: str,
) -> str | None:
    """Why ``decision`` must not be acted on for this job and video; None when it may."""
    public = trusted.get(decision.key_id)
    if public is None:
        return f"key {decision.key_id!r} is not a trusted review web app key"
    try:
        public.verify(decision.signature, signed_bytes(decision))
    except InvalidSignature:
        return "the signature does not verify"
    if decision.job_id != job_id:
        return "it was made for another job"
    if decision.video_sha256 != video_sha256:
        return "the video is not the one the reviewer saw"
    rejects = decision.outcome == ReviewOutcome.REVIEW_REJECT
    if rejects and decision.reason_code not in REVIEWER_REASONS:
        return f"{decision.reason_code!r} is not a reason a reviewer may give"
    if decision.outcome not in (ReviewOutcome.REVIEW_APPROVE, ReviewOutcome.REVIEW_REJECT):
        return "it neither approves nor rejects"
    return None
