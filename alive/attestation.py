"""Stage attestations: each deciding or producing stage signs what it decided about a job, and
each stage that acts on a decision checks the signatures first (docs/security.md).

An attestation says: stage S gave verdict V on job J of creator C, judging (or making) the
subject (photo, prompt or video) whose sha256 is H, under these policy and model versions.
It is signed with S's Ed25519 key. A stage checks the attestations its ``StageSpec.requires``
names against the job as it stands: a forged event, a replayed attestation from another job,
or a swapped photo, prompt or video fails the check, because the signature, job, creator or
digest no longer match.

Keys: each stage holds its own private key (``attestation_key_path`` in its settings); every
stage reads the public keys it trusts, by stage, from one JSON file
(``ALIVE_ATTESTATION_TRUST_PATH``): ``{"<stage>": ["<base64 raw Ed25519 public key>", ...]}``.
Several keys per stage make rotation possible: add the new public key everywhere, switch the
stage's private key, remove the old public key once no job signed with it is in flight.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from alive.pipeline import PIPELINE, StageSpec, Subject
from alive.reasons import Finding, ReasonCode
from alive.settings import ServiceSettings, StageSettings
from alive.v1.events_pb2 import Attestation, Job, Verdict

# Versioned so that a change of encoding can never make an old signature mean something new.
_DOMAIN = b"alive.attestation.v1"
# The verdicts that let a job go on: a review mark still clears (a person looks later).
CLEARING_VERDICTS = frozenset({Verdict.PASS, Verdict.REVIEW})


class KeyFileError(ValueError):
    """A key or trust file that cannot be used: the service stops at start."""


def signed_scores(job: Job, stage: str) -> Mapping[str, float]:
    """The scores of ``stage``'s newest attestation on ``job`` (empty when there is none):
    facts a later stage may act on, once the runner has checked that attestation."""
    mine = [a for a in job.attestations if a.stage == stage]
    return dict(mine[-1].scores) if mine else {}


def subject_digest(job: Job, subject: Subject) -> str:
    """The sha256 an attestation over ``subject`` must carry for the job as it stands."""
    if subject == Subject.PHOTO:
        return job.photo.sha256
    if subject == Subject.PROMPT:
        # After the last stage that reads it the job carries only the prompt's blob, whose
        # sha256 is the prompt's; a stage that reads the prompt refuses a job without one
        # (alive/processing.py), so this never vouches for a prompt no one checked.
        if not job.prompt and job.prompt_ref.sha256:
            return job.prompt_ref.sha256
        return hashlib.sha256(job.prompt.encode()).hexdigest()
    return job.video.sha256


def signed_bytes(attestation: Attestation) -> bytes:
    """The bytes a signature covers: every field but key_id and signature, each
    length-prefixed, so that no two different attestations encode alike."""
    fields = [
        attestation.stage,
        attestation.job_id,
        attestation.creator_id,
        Verdict.Name(attestation.verdict),
        attestation.subject,
        attestation.subject_sha256,
        *(f"{k}={v}" for k, v in sorted(attestation.versions.items())),
        "scores",  # separates the two maps: no version can pass for a score
        *(f"{k}={v!r}" for k, v in sorted(attestation.scores.items())),
    ]
    return length_prefixed(_DOMAIN, fields)


def length_prefixed(domain: bytes, fields: Iterable[str]) -> bytes:
    """``domain`` then each field as its UTF-8 length (4 bytes) and bytes: what is signed,
    so that no two field lists encode the same."""
    out = bytearray(domain)
    for value in fields:
        encoded = value.encode()
        out += len(encoded).to_bytes(4, "big") + encoded
    return bytes(out)


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_text(public: Ed25519PublicKey) -> str:
    """How a public key is written in the trust file: base64 of its 32 raw bytes."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class AttestationFailure:
    """Why a required attestation does not hold: the finding that ends the job, and the
    stage whose attestation it was (a metric label)."""

    required_stage: str
    finding: Finding


@dataclass(frozen=True)
class Keyring:
    """One stage's signing key (None for a stage that attests nothing) and the public keys it
    trusts, by stage and key id."""

    signer: Ed25519PrivateKey | None
    trusted: Mapping[str, Mapping[str, Ed25519PublicKey]] = field(default_factory=dict)

    @classmethod
    def load(cls, key_path: Path | None, trust_path: Path) -> Keyring:
        signer = None
        if key_path is not None:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise KeyFileError(f"{key_path} is not an Ed25519 private key")
            signer = key
        try:
            document = json.loads(trust_path.read_text())
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"attestation trust file {trust_path}: {exc}") from exc
        return cls(signer, parse_trust(document))

    def attest(
        self,
        spec: StageSpec,
        job: Job,
        verdict: Verdict.ValueType,
        versions: Mapping[str, str],
        scores: Mapping[str, float] | None = None,
    ) -> Attestation:
        """The stage's signed statement on ``job`` as it leaves the stage."""
        if self.signer is None or spec.attests is None:
            raise KeyFileError(f"{spec.name} has no attestation key")
        attestation = Attestation(
            stage=spec.name,
            job_id=job.job_id,
            creator_id=job.creator_id,
            verdict=verdict,
            subject=spec.attests.value,
            subject_sha256=subject_digest(job, spec.attests),
            versions=dict(versions),
            scores=dict(scores or {}),
            key_id=key_id(self.signer.public_key()),
        )
        attestation.signature = self.signer.sign(signed_bytes(attestation))
        return attestation

    def check(self, job: Job, required: Sequence[str]) -> AttestationFailure | None:
        """None when every stage in ``required`` has a valid, clearing attestation over the
        job as it stands; otherwise the first one that does not."""
        for stage in required:
            failure = self._check_one(job, PIPELINE.stage(stage))
            if failure is not None:
                return AttestationFailure(stage, failure)
        return None

    def _check_one(self, job: Job, spec: StageSpec) -> Finding | None:
        assert spec.attests is not None, f"{spec.name} attests nothing"
        mine = [a for a in job.attestations if a.stage == spec.name]
        if not mine:
            return Finding(ReasonCode.ATTESTATION_MISSING, f"no attestation from {spec.name}")
        # The newest counts: a stage attests once per job, so more than one is a forgery or
        # a replay, and the newest must hold on its own.
        attestation = mine[-1]
        keys = self.trusted.get(spec.name, {})
        public = keys.get(attestation.key_id)
        problem = None
        if public is None:
            problem = f"key {attestation.key_id!r} is not a trusted {spec.name} key"
        else:
            try:
                public.verify(attestation.signature, signed_bytes(attestation))
            except InvalidSignature:
                problem = "the signature does not verify"
        if problem is None:
            problem = _mismatch(attestation, job, spec.attests)
        if problem is not None:
            return Finding(ReasonCode.ATTESTATION_INVALID, f"{spec.name}: {problem}")
        return None


def load_keyring(spec: StageSpec, own: StageSettings, shared: ServiceSettings) -> Keyring:
    """The stage's keyring from settings; a stage that attests must have its key."""
    if spec.attests is not None and own.attestation_key_path is None:
        raise KeyFileError(f"{spec.name} attests: set {spec.settings_prefix}ATTESTATION_KEY_PATH")
    key_path = own.attestation_key_path if spec.attests is not None else None
    return Keyring.load(key_path, shared.attestation_trust_path)


def _mismatch(attestation: Attestation, job: Job, subject: Subject) -> str | None:
    """What about a correctly signed attestation does not fit this job, if anything."""
    if attestation.job_id != job.job_id or attestation.creator_id != job.creator_id:
        return "it was made for another job"
    if attestation.subject != subject.value:
        return f"it vouches for {attestation.subject!r}, not {subject.value!r}"
    if attestation.subject_sha256 != subject_digest(job, subject):
        return f"the {subject.value} is not the one it judged"
    if attestation.verdict not in CLEARING_VERDICTS:
        return f"its verdict is {Verdict.Name(attestation.verdict)}"
    return None


def parse_trust(document: object) -> dict[str, dict[str, Ed25519PublicKey]]:
    """The trust file's public keys, by stage and key id; refuses anything malformed."""
    if not isinstance(document, dict):
        raise KeyFileError("the trust file must map stage names to lists of public keys")
    trusted: dict[str, dict[str, Ed25519PublicKey]] = {}
    for stage, keys in document.items():
        if stage not in {s.name for s in PIPELINE}:
            raise KeyFileError(f"{stage!r} is not a stage of the pipeline")
        if not isinstance(keys, list):
            raise KeyFileError(f"{stage}: expected a list of base64 public keys")
        trusted[stage] = {}
        for text in keys:
            try:
                public = Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
            except (ValueError, TypeError) as exc:
                raise KeyFileError(f"{stage}: {text!r} is not an Ed25519 public key") from exc
            trusted[stage][key_id(public)] = public
    return trusted
