"""Stage attestations: a signed decision holds only for the job, creator, subject bytes and
verdict it was made on, under a trusted key; the trust file allows rotation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from alive.attestation import KeyFileError, Keyring, parse_trust
from alive.pipeline import PIPELINE, REVIEW, Subject
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import BlobRef, Job, Verdict
from alive_tools.keys import TRUST_FILE, StageKeys, ensure_key_dir

PHOTO_SHA = hashlib.sha256(b"photo").hexdigest()
VIDEO_SHA = hashlib.sha256(b"video").hexdigest()


def job() -> Job:
    return Job(
        job_id="j1",
        creator_id="c1",
        prompt="waves at dusk",
        photo=BlobRef(uri="file:///p", sha256=PHOTO_SHA),
        video=BlobRef(uri="file:///v", sha256=VIDEO_SHA),
    )


REQUIRED = ("moderation-photo", "moderation-prompt", "provenance")


def test_attestations_over_the_job_as_it_stands_hold() -> None:
    keys = StageKeys()
    signed = keys.attest(job(), *REQUIRED)
    assert [a.subject for a in signed.attestations] == ["photo", "prompt", "video"]
    assert signed.attestations[1].subject_sha256 == hashlib.sha256(b"waves at dusk").hexdigest()
    assert keys.keyring("review").check(signed, REQUIRED) is None


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda j: setattr(j, "job_id", "j2"), "made for another job"),
        (lambda j: setattr(j, "creator_id", "c2"), "made for another job"),
        (lambda j: setattr(j.photo, "sha256", VIDEO_SHA), "photo is not the one it judged"),
        (lambda j: setattr(j, "prompt", "something else"), "prompt is not the one it judged"),
        (lambda j: setattr(j.video, "sha256", PHOTO_SHA), "video is not the one it judged"),
        (lambda j: setattr(j.attestations[0], "verdict", Verdict.PASS + 1), "does not verify"),
        (lambda j: j.attestations[2].versions.update(model="other"), "does not verify"),
        (lambda j: j.attestations[0].scores.update(apparent_min_age=30.0), "does not verify"),
        (lambda j: setattr(j.attestations[1], "signature", b"\0" * 64), "does not verify"),
    ],
)
def test_any_change_after_signing_breaks_it(change, why: str) -> None:  # type: ignore[no-untyped-def]
    keys = StageKeys()
    signed = keys.attest(job(), *REQUIRED)
    change(signed)
    failure = keys.keyring("review").check(signed, REQUIRED)
    assert failure is not None
    assert failure.finding.code == ReasonCode.ATTESTATION_INVALID
    assert why in failure.finding.detail


def test_a_missing_one_is_named() -> None:
    keys = StageKeys()
    signed = keys.attest(job(), "moderation-photo", "provenance")
    failure = keys.keyring("review").check(signed, REQUIRED)
    assert failure is not None and failure.required_stage == "moderation-prompt"
    assert failure.finding.code == ReasonCode.ATTESTATION_MISSING


def test_a_veto_never_clears() -> None:
    keys = StageKeys()
    signed = keys.attest(job(), "moderation-photo", verdict=Verdict.VETO)
    failure = keys.keyring("generator").check(signed, ("moderation-photo",))
    assert failure is not None and "verdict is VETO" in failure.finding.detail


def test_a_stage_key_cannot_sign_for_another_stage() -> None:
    keys = StageKeys()
    forged = job()
    # The prompt checkpoint's key, used to sign a statement in the photo checkpoint's name.
    photo_spec = PIPELINE.stage("moderation-photo")
    forged.attestations.append(keys.keyring("moderation-prompt").attest(photo_spec, forged, 1, {}))
    failure = keys.keyring("generator").check(forged, ("moderation-photo",))
    assert failure is not None and "not a trusted moderation-photo key" in failure.finding.detail


def test_a_rotated_trust_file_accepts_old_and_new_keys_until_the_old_is_removed(
    tmp_path: Path,
) -> None:
    old, new = StageKeys(), StageKeys()
    both = {
        stage: old.trust_document()[stage] + new.trust_document()[stage] for stage in old.private
    }
    during = Keyring(None, parse_trust(both))
    assert during.check(old.attest(job(), *REQUIRED), REQUIRED) is None
    assert during.check(new.attest(job(), *REQUIRED), REQUIRED) is None
    after = Keyring(None, parse_trust(new.trust_document()))
    assert after.check(old.attest(job(), *REQUIRED), REQUIRED) is not None


def test_key_files_load_and_a_bad_trust_file_is_refused(tmp_path: Path) -> None:
    paths = ensure_key_dir(tmp_path / "keys")
    assert set(paths) == {s.name for s in PIPELINE if s.attests}
    assert oct(paths["review"].stat().st_mode & 0o777) == "0o600"
    trust = tmp_path / "keys" / TRUST_FILE
    photo = Keyring.load(paths["moderation-photo"], trust)
    signed = job()
    signed.attestations.append(
        photo.attest(PIPELINE.stage("moderation-photo"), signed, Verdict.PASS, {"policy": "1"})
    )
    assert Keyring.load(None, trust).check(signed, ("moderation-photo",)) is None
    for bad in ({"no-such-stage": []}, {"review": ["not base64!"]}, ["review"]):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(KeyFileError):
            Keyring.load(None, tmp_path / "bad.json")


def test_review_requires_every_checkpoint_and_provenance() -> None:
    assert set(PIPELINE.checkpoints) | {"provenance"} <= set(REVIEW.requires)
    assert REVIEW.attests == Subject.VIDEO
