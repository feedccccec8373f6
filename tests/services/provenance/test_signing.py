"""Tests for AI labelling (tags, XMP) and C2PA signing of generated videos: the manifest's
content and privacy, the signers (key file, external function), timestamps and expiry."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import c2pa
import pytest
from PIL import Image
from pydantic import ValidationError

from alive.provenance import ALIVE_ASSERTION_LABEL, DIGITAL_SOURCE_TYPE_AI, verify_video
from alive_tools.signing_chain import CertChain, ensure_dev_chain, issue_leaf
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import (
    AI_DESCRIPTION,
    AI_LABEL,
    CHAIN_FILE,
    KEY_FILE,
    GenerationFacts,
    SigningSetupError,
    VideoSigner,
    label_ai_generated,
    signer_from_settings,
)
from tests.provenance_support import (
    EXTERNAL_KEY,
    FACTS,
    JOB_ID,
    PROMPT,
    local_tsa,
)
from tests.support import write_clip


def _store(path: Path) -> dict[str, Any]:
    with path.open("rb") as stream, c2pa.Reader("video/mp4", stream) as reader:
        store: dict[str, Any] = json.loads(reader.json())
    return store


def _manifest(path: Path) -> dict[str, Any]:
    store = _store(path)
    manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
    return manifest


def _assertions(path: Path) -> dict[str, Any]:
    return {a["label"]: a["data"] for a in _manifest(path)["assertions"]}


def _packets(path: Path) -> list[tuple[str, bytes]]:
    with av.open(str(path)) as container:
        return [(p.stream.type, bytes(p)) for p in container.demux() if p.size]


def _exiftool_xmp(path: Path) -> dict[str, Any]:
    """The XMP exiftool (Debian's libimage-exiftool-perl, installed by .ci/run) reads: no C2PA
    code involved."""
    exiftool = shutil.which("exiftool")
    assert exiftool, "exiftool is missing: .ci/run installs libimage-exiftool-perl"
    out = subprocess.run(
        [exiftool, "-j", "-XMP:all", str(path)], check=True, capture_output=True, text=True
    )
    tags: dict[str, Any] = json.loads(out.stdout)[0]
    return tags


def _settings(chain_dir: Path, **extra: Any) -> ProvenanceSettings:
    return ProvenanceSettings(cert_dir=chain_dir, trust_anchor_path=chain_dir / "root.pem", **extra)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("signing")


@pytest.fixture(scope="module")
def chain(work: Path) -> CertChain:
    return ensure_dev_chain(work / "certs")


@pytest.fixture(scope="module")
def photo(work: Path) -> Path:
    path = work / "photo.jpg"
    buffer = io.BytesIO()
    Image.new("RGB", (80, 60), (200, 120, 40)).save(buffer, format="JPEG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def clip(work: Path) -> Path:
    path = work / "clip.mp4"
    write_clip(path)
    return path


@pytest.fixture(scope="module")
def labelled(work: Path, clip: Path) -> Path:
    path = work / "labelled.mp4"
    label_ai_generated(clip, path)
    return path


@pytest.fixture(scope="module")
def signer(work: Path, chain: CertChain) -> VideoSigner:
    return VideoSigner(signer_from_settings(_settings(work / "certs")))


@pytest.fixture(scope="module")
def signed(work: Path, labelled: Path, photo: Path, signer: VideoSigner) -> Path:
    path = work / "signed.mp4"
    signer.sign(labelled, photo, "image/jpeg", FACTS, path)
    return path


def test_label_tags_are_readable_and_streams_are_copied(clip: Path, labelled: Path) -> None:
    with av.open(str(labelled)) as container:
        assert container.metadata["comment"] == AI_LABEL
        assert container.metadata["description"] == AI_LABEL
        assert [s.type for s in container.streams] == ["video", "audio"]
    # Stream copy: the coded packets are the same bytes, nothing was re-encoded.
    assert _packets(labelled) == _packets(clip)


def test_label_moves_moov_before_mdat(labelled: Path) -> None:
    data = labelled.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


@pytest.mark.parametrize("which", ["labelled", "signed"])
def test_xmp_label_is_readable_without_c2pa(which: str, labelled: Path, signed: Path) -> None:
    tags = _exiftool_xmp(labelled if which == "labelled" else signed)
    assert tags["DigitalSourceType"] == DIGITAL_SOURCE_TYPE_AI
    assert tags["Description"] == AI_DESCRIPTION


def test_unlabelled_clip_has_no_xmp(clip: Path) -> None:
    assert "DigitalSourceType" not in _exiftool_xmp(clip)


def test_signed_video_verifies_trusted_and_ai_generated(signed: Path, chain: CertChain) -> None:
    check = verify_video(signed, chain.root_cert.read_bytes())
    assert check.state == "Trusted", check.failure_codes
    assert check.trusted and check.ai_generated
    assert check.digital_source_type == DIGITAL_SOURCE_TYPE_AI
    assert (check.generator, check.generator_version) == (FACTS.model_name, FACTS.model_version)
    assert check.ingredient_relationships == ("inputTo",)
    assert check.signer is not None and "Alive development" in check.signer
    assert check.failure_codes == ()
    assert not check.timestamped and check.signed_at is None
    assert check.claimed_at == FACTS.created_at


def test_alive_assertion_discloses_only_what_is_safe(signed: Path, chain: CertChain) -> None:
    assertion = verify_video(signed, chain.root_cert.read_bytes()).alive_assertion
    assert assertion == {
        "video_id": FACTS.video_id,
        "model": {"name": FACTS.model_name, "version": FACTS.model_version},
        "parameters": {
            "seed": FACTS.seed,
            "frames": FACTS.frames,
            "fps": FACTS.fps,
            "duration_ms": FACTS.duration_ms,
            "width": FACTS.width,
            "height": FACTS.height,
            "training_use_consent": False,
        },
        "moderation": {
            "checkpoints_passed": ["moderation-photo", "moderation-prompt"],
            "checkpoints_after_signing": ["moderation-video"],
            "policy_versions": {"moderation-photo": "photo-7", "moderation-prompt": "prompt-12"},
        },
    }
    data = signed.read_bytes()
    for secret in (PROMPT, "lighthouse", hashlib.sha256(PROMPT.encode()).hexdigest(), JOB_ID):
        assert secret.encode() not in data, secret
    assert b"prompt_sha256" not in data and b"job_id" not in data


def test_each_video_gets_a_random_id(
    work: Path, labelled: Path, photo: Path, signer: VideoSigner
) -> None:
    given = {f.name: getattr(FACTS, f.name) for f in dataclasses.fields(FACTS)}
    del given["video_id"]
    ids = set()
    for n in range(2):
        facts = GenerationFacts(**given)  # as the stage makes them: the id drawn anew
        out = work / f"id-{n}.mp4"
        signer.sign(labelled, photo, "image/jpeg", facts, out)
        assert _assertions(out)[ALIVE_ASSERTION_LABEL]["video_id"] == facts.video_id
        assert _manifest(out)["title"] == f"alive-{facts.video_id}.mp4"
        ids.add(facts.video_id)
    assert len(ids) == 2
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_the_persons_training_choice_is_a_parameter(
    work: Path, labelled: Path, photo: Path, signer: VideoSigner
) -> None:
    out = work / "consented.mp4"
    signer.sign(
        labelled, photo, "image/jpeg", dataclasses.replace(FACTS, training_use_consent=True), out
    )
    assert _assertions(out)[ALIVE_ASSERTION_LABEL]["parameters"]["training_use_consent"] is True
    no = _assertions(work / "signed.mp4")[ALIVE_ASSERTION_LABEL]["parameters"]
    assert no["training_use_consent"] is False


def test_job_id_only_where_the_setting_allows(
    work: Path, labelled: Path, photo: Path, signer: VideoSigner
) -> None:
    out = work / "with-job.mp4"
    signer.sign(labelled, photo, "image/jpeg", dataclasses.replace(FACTS, job_id=JOB_ID), out)
    assert _assertions(out)[ALIVE_ASSERTION_LABEL]["job_id"] == JOB_ID


def test_manifest_shape(signed: Path) -> None:
    manifest = _manifest(signed)
    assert manifest["claim_generator_info"][0]["name"] == "Alive"
    assert manifest["title"] == f"alive-{FACTS.video_id}.mp4"
    assertions = _assertions(signed)
    first = assertions["c2pa.actions.v2"]["actions"][0]
    assert first["action"] == "c2pa.created"
    assert first["digitalSourceType"] == DIGITAL_SOURCE_TYPE_AI
    assert first["softwareAgent"] == {"name": FACTS.model_name, "version": FACTS.model_version}
    assert first["when"] == FACTS.created_at
    entries = assertions["cawg.training-mining"]["entries"]
    assert entries["cawg.ai_generative_training"] == {"use": "notAllowed"}
    # The builder settings are applied (unknown keys would be ignored silently): no copy of
    # the source photo travels inside the video, and its name is not its file name.
    (ingredient,) = manifest["ingredients"]
    assert "thumbnail" not in ingredient
    assert ingredient["relationship"] == "inputTo"
    assert ingredient["title"] == "source photo"


def test_thumbnail_setting_puts_the_photo_in(
    work: Path, labelled: Path, photo: Path, chain: CertChain
) -> None:
    signer = VideoSigner(signer_from_settings(_settings(work / "certs")), ingredient_thumbnail=True)
    out = work / "thumb.mp4"
    signer.sign(labelled, photo, "image/jpeg", FACTS, out)
    (ingredient,) = _manifest(out)["ingredients"]
    assert "thumbnail" in ingredient


def test_signed_media_is_unchanged_and_labels_survive(labelled: Path, signed: Path) -> None:
    assert _packets(signed) == _packets(labelled)
    with av.open(str(signed)) as container:
        assert container.metadata["comment"] == AI_LABEL


def test_signer_is_reusable(
    work: Path, labelled: Path, photo: Path, signer: VideoSigner, chain: CertChain
) -> None:
    for n in range(3):
        out = work / f"again-{n}.mp4"
        signer.sign(labelled, photo, "image/jpeg", FACTS, out)
        assert verify_video(out, chain.root_cert.read_bytes()).trusted


def test_failed_sign_leaves_no_output(work: Path, photo: Path, signer: VideoSigner) -> None:
    garbage, out = work / "garbage.mp4", work / "never.mp4"
    garbage.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(c2pa.C2paError):
        signer.sign(garbage, photo, "image/jpeg", FACTS, out)
    assert not out.exists()


def test_renewed_leaf_still_trusted_under_the_old_root(
    tmp_path: Path, labelled: Path, photo: Path
) -> None:
    chain = ensure_dev_chain(tmp_path)
    anchor = chain.root_cert.read_bytes()
    chain.key_pem.write_bytes(b"lost")
    ensure_dev_chain(tmp_path)
    out = tmp_path / "signed.mp4"
    VideoSigner(signer_from_settings(_settings(tmp_path))).sign(
        labelled, photo, "image/jpeg", FACTS, out
    )
    assert verify_video(out, anchor).trusted


def test_external_signer_signs_with_a_key_no_setting_names(
    tmp_path: Path, labelled: Path, photo: Path
) -> None:
    dev = tmp_path / "dev"
    cert_dir = tmp_path / "kms"
    cert_dir.mkdir()
    issue_leaf(dev, EXTERNAL_KEY.public_key(), cert_dir / CHAIN_FILE)
    settings = ProvenanceSettings(
        cert_dir=cert_dir,
        trust_anchor_path=dev / "root.pem",
        external_signer="tests.provenance_support:external_sign",
    )
    # No private key anywhere the settings point.
    assert [p.name for p in cert_dir.iterdir()] == [CHAIN_FILE]
    assert b"PRIVATE KEY" not in (cert_dir / CHAIN_FILE).read_bytes()
    out = tmp_path / "signed.mp4"
    VideoSigner(signer_from_settings(settings)).sign(labelled, photo, "image/jpeg", FACTS, out)
    check = verify_video(out, (dev / "root.pem").read_bytes())
    assert check.trusted, check.failure_codes
    assert check.ai_generated


def test_external_signer_with_the_wrong_key_does_not_verify(
    tmp_path: Path, labelled: Path, photo: Path
) -> None:
    # The chain certifies the dev leaf's key, the function signs with another: the signer
    # is really called, its signature really checked.
    chain = ensure_dev_chain(tmp_path)
    settings = _settings(tmp_path, external_signer="tests.provenance_support:external_sign")
    out = tmp_path / "signed.mp4"
    try:
        VideoSigner(signer_from_settings(settings)).sign(labelled, photo, "image/jpeg", FACTS, out)
    except c2pa.C2paError:
        return  # refused at signing: as good as refused at verification
    assert not verify_video(out, chain.root_cert.read_bytes()).trusted


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cert_dir": None}, "no signing settings: set ALIVE_PROVENANCE__CERT_DIR"),
        ({"missing": KEY_FILE}, "the signing key"),
        ({"missing": CHAIN_FILE}, "the certificate chain"),
        ({"external_signer": "tests.nowhere:sign"}, "cannot be loaded"),
        ({"external_signer": "tests.provenance_support:PROMPT"}, "not callable"),
        ({"missing": KEY_FILE, "external_signer": None, "signing_alg": "ps256"}, "the signing key"),
    ],
    ids=["no-cert-dir", "no-key", "no-chain", "bad-module", "not-callable", "no-key-ps256"],
)
def test_unusable_signing_settings_are_refused_with_a_reason(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    ensure_dev_chain(tmp_path)
    if "missing" in change:
        (tmp_path / change.pop("missing")).unlink()
    settings = _settings(tmp_path).model_copy(update=change)
    with pytest.raises(SigningSetupError, match=message):
        signer_from_settings(settings)


def test_a_timestamp_authority_must_be_an_http_url() -> None:
    with pytest.raises(ValidationError, match="http"):
        ProvenanceSettings(tsa_url="ftp://tsa.example")


def test_timestamped_signature(tmp_path: Path, labelled: Path, photo: Path) -> None:
    chain = ensure_dev_chain(tmp_path / "certs")
    with local_tsa(tmp_path / "tsa") as tsa:
        settings = _settings(tmp_path / "certs", tsa_url=tsa.url)
        out = tmp_path / "signed.mp4"
        VideoSigner(signer_from_settings(settings)).sign(labelled, photo, "image/jpeg", FACTS, out)
        assert len(tsa.requests) == 1
    check = verify_video(out, chain.root_cert.read_bytes() + tsa.root_pem)
    assert check.trusted, check.failure_codes
    assert check.timestamped
    assert check.signed_at is not None and check.signed_at.startswith("20")


def test_signatures_outlive_the_certificate_only_with_a_timestamp(
    tmp_path: Path, labelled: Path, photo: Path
) -> None:
    dev = tmp_path / "dev"
    anchors = ensure_dev_chain(dev).root_cert.read_bytes()
    cert_dir = tmp_path / "short"
    cert_dir.mkdir()
    issue_leaf(dev, EXTERNAL_KEY.public_key(), cert_dir / CHAIN_FILE, lifetime=timedelta(seconds=3))
    outs = {}
    with local_tsa(tmp_path / "tsa") as tsa:
        for timestamped in (False, True):
            settings = ProvenanceSettings(
                cert_dir=cert_dir,
                trust_anchor_path=dev / "root.pem",
                external_signer="tests.provenance_support:external_sign",
                tsa_url=tsa.url if timestamped else None,
            )
            outs[timestamped] = tmp_path / f"signed-{timestamped}.mp4"
            VideoSigner(signer_from_settings(settings)).sign(
                labelled, photo, "image/jpeg", FACTS, outs[timestamped]
            )
    assert verify_video(outs[False], anchors).trusted  # before the certificate expires
    time.sleep(4)
    expired = verify_video(outs[False], anchors)
    assert expired.state == "Invalid"
    assert "signingCredential.expired" in expired.failure_codes
    kept = verify_video(outs[True], anchors + tsa.root_pem)
    assert kept.trusted and kept.timestamped, kept.failure_codes
