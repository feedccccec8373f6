"""Tests for AI labelling and C2PA signing of generated videos."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import av
import c2pa
import pytest
from PIL import Image

from alive.provenance import ALIVE_ASSERTION_LABEL, DIGITAL_SOURCE_TYPE_AI, verify_video
from services.provenance.certs import CertChain, ensure_dev_chain
from services.provenance.signing import (
    AI_LABEL,
    GenerationFacts,
    VideoSigner,
    label_ai_generated,
)
from tests.support import write_clip

PROMPT = "a lighthouse at dusk, waves rolling in"
FACTS = GenerationFacts(
    asset_id="a1b2c3",
    model_name="alive-motion",
    model_version="0.3.1",
    prompt_sha256=hashlib.sha256(PROMPT.encode()).hexdigest(),
    moderation={"moderation-photo": "pass", "moderation-prompt": "pass"},
    created_at="2025-06-01T12:00:00+00:00",
)


def _manifest(path: Path) -> dict[str, Any]:
    with path.open("rb") as stream, c2pa.Reader("video/mp4", stream) as reader:
        store = json.loads(reader.json())
    manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
    return manifest


def _packets(path: Path) -> list[tuple[str, bytes]]:
    with av.open(str(path)) as container:
        return [(p.stream.type, bytes(p)) for p in container.demux() if p.size]


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
def signer(chain: CertChain) -> VideoSigner:
    return VideoSigner(chain)


@pytest.fixture(scope="module")
def signed(work: Path, labelled: Path, photo: Path, signer: VideoSigner) -> Path:
    path = work / "signed.mp4"
    signer.sign(labelled, photo, "image/jpeg", FACTS, path)
    return path


def test_label_is_readable_and_streams_are_copied(clip: Path, labelled: Path) -> None:
    with av.open(str(labelled)) as container:
        assert container.metadata["comment"] == AI_LABEL
        assert container.metadata["description"] == AI_LABEL
        assert [s.type for s in container.streams] == ["video", "audio"]
    # Stream copy: the coded packets are the same bytes, nothing was re-encoded.
    assert _packets(labelled) == _packets(clip)


def test_label_moves_moov_before_mdat(labelled: Path) -> None:
    data = labelled.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_signed_video_verifies_trusted_and_ai_generated(signed: Path, chain: CertChain) -> None:
    check = verify_video(signed, chain.root_cert.read_bytes())
    assert check.state == "Trusted", check.failure_codes
    assert check.trusted and check.ai_generated
    assert check.digital_source_type == DIGITAL_SOURCE_TYPE_AI
    assert check.generator == FACTS.model_name
    assert check.ingredient_relationships == ("inputTo",)
    assert check.failure_codes == ()


def test_alive_assertion_round_trips_without_the_prompt(
    signed: Path, chain: CertChain, photo: Path
) -> None:
    assertion = verify_video(signed, chain.root_cert.read_bytes()).alive_assertion
    assert assertion == {
        "asset_id": FACTS.asset_id,
        "model": {"name": FACTS.model_name, "version": FACTS.model_version},
        "prompt_sha256": FACTS.prompt_sha256,
        "source_photo_sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
        "moderation": FACTS.moderation,
        "created_at": FACTS.created_at,
    }
    data = signed.read_bytes()
    assert PROMPT.encode() not in data
    assert b"lighthouse" not in data


def test_manifest_shape(signed: Path) -> None:
    manifest = _manifest(signed)
    assert manifest["claim_generator_info"][0]["name"] == "Alive"
    assert manifest["title"] == f"alive-{FACTS.asset_id}.mp4"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    first = assertions["c2pa.actions.v2"]["actions"][0]
    assert first["action"] == "c2pa.created"
    assert first["digitalSourceType"] == DIGITAL_SOURCE_TYPE_AI
    assert first["softwareAgent"] == {"name": FACTS.model_name, "version": FACTS.model_version}
    assert first["when"] == FACTS.created_at
    assert ALIVE_ASSERTION_LABEL in assertions
    entries = assertions["cawg.training-mining"]["entries"]
    assert entries["cawg.ai_generative_training"] == {"use": "notAllowed"}
    # The builder settings are applied (unknown keys would be ignored silently): no copy of
    # the source photo travels inside the video.
    (ingredient,) = manifest["ingredients"]
    assert "thumbnail" not in ingredient
    assert ingredient["relationship"] == "inputTo"


def test_signed_media_is_unchanged_and_label_survives(labelled: Path, signed: Path) -> None:
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
    renewed = ensure_dev_chain(tmp_path)
    out = tmp_path / "signed.mp4"
    VideoSigner(renewed).sign(labelled, photo, "image/jpeg", FACTS, out)
    assert verify_video(out, anchor).trusted
