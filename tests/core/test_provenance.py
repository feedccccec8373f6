"""Tests for alive.provenance: trust, tampering, missing and unreadable manifests, re-encoding,
and files other tools signed (JPEG, PNG)."""

from __future__ import annotations

import os
import shutil
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image

from alive.media import encode_h264, read_frames
from alive.provenance import (
    DIGITAL_SOURCE_TYPE_AI,
    NO_MANIFEST,
    UNKNOWN_FORMAT,
    Verification,
    explain,
    media_type,
    verify_file,
    verify_video,
)
from alive_tools.signing_chain import CertChain, ensure_dev_chain
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import VideoSigner, label_ai_generated, signer_from_settings
from tests.provenance_support import FACTS, sign_image
from tests.support import write_clip


def _mdat_span(data: bytes) -> tuple[int, int]:
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"mdat":
            return offset + 8, offset + size
        offset += size
    raise AssertionError("no mdat box")


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> CertChain:
    return ensure_dev_chain(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("unsigned")
    write_clip(work / "raw.mp4")
    label_ai_generated(work / "raw.mp4", work / "labelled.mp4")
    return work / "labelled.mp4"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, chain: CertChain, unsigned: Path) -> Path:
    work = tmp_path_factory.mktemp("signed")
    (work / "photo.png").write_bytes(_png())
    settings = ProvenanceSettings(cert_dir=chain.key_pem.parent, trust_anchor_path=chain.root_cert)
    VideoSigner(signer_from_settings(settings)).sign(
        unsigned, work / "photo.png", "image/png", FACTS, work / "out.mp4"
    )
    return work / "out.mp4"


def _png() -> bytes:
    buffer = BytesIO()
    Image.new("RGB", (32, 24), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def anchor(chain: CertChain) -> bytes:
    return chain.root_cert.read_bytes()


def _tampered(signed: Path, tmp_path: Path, edit: bytes | int) -> Path:
    data = bytearray(signed.read_bytes())
    if isinstance(edit, int):
        data[edit] ^= 0xFF
    else:
        data += edit
    out = tmp_path / "tampered.mp4"
    out.write_bytes(bytes(data))
    return out


def test_signed_file_is_trusted(signed: Path, anchor: bytes) -> None:
    check = verify_video(signed, anchor)
    assert check.state == "Trusted", check.failure_codes
    assert check.ai_generated and check.digital_source_type == DIGITAL_SOURCE_TYPE_AI
    assert check.generator == FACTS.model_name
    assert check.ingredient_relationships == ("inputTo",)
    assert check.alive_assertion is not None
    assert check.alive_assertion["video_id"] == FACTS.video_id


def test_trust_anchor_is_applied(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    # Same file, another freshly made root: the signature is intact but not trusted, which
    # proves the trust settings reach the validator rather than being silently dropped.
    other = ensure_dev_chain(tmp_path / "other").root_cert.read_bytes()
    assert other != anchor
    check = verify_video(signed, other)
    assert check.state == "Valid"
    assert not check.trusted
    assert "signingCredential.untrusted" in check.failure_codes
    assert verify_video(signed, anchor).trusted


def test_byte_for_byte_copy_stays_trusted(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    downloaded = tmp_path / "downloads" / "video"  # a download may lose the file extension
    downloaded.parent.mkdir()
    with signed.open("rb") as src, downloaded.open("wb") as dst:
        shutil.copyfileobj(src, dst, length=4096)
    assert verify_video(downloaded, anchor).trusted


def test_flipped_byte_in_the_middle_is_invalid(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    data = signed.read_bytes()
    middle = len(data) // 2
    start, end = _mdat_span(data)
    assert start < middle < end  # the middle byte is coded media, not the manifest
    check = verify_video(_tampered(signed, tmp_path, middle), anchor)
    assert check.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in check.failure_codes


def test_appended_bytes_are_invalid(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    check = verify_video(_tampered(signed, tmp_path, b"\x00" * 16), anchor)
    assert check.state == "Invalid"
    assert "assertion.bmffHash.mismatch" in check.failure_codes


def test_edited_manifest_is_invalid(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    data = signed.read_bytes()
    offset = data.index(FACTS.video_id.encode())
    check = verify_video(_tampered(signed, tmp_path, offset), anchor)
    assert check.state == "Invalid"
    assert "assertion.hashedURI.mismatch" in check.failure_codes
    assert explain("assertion.hashedURI.mismatch") == "an assertion was edited after signing"


def test_a_re_encoded_copy_has_no_manifest(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    # What a sharing platform that transcodes does: the pictures survive, the manifest not.
    frames = read_frames(signed)
    copy = tmp_path / "transcoded.mp4"
    encode_h264(frames, 12, copy, crf=30)
    check = verify_video(copy, anchor)
    assert check.state == "Missing"
    assert check.failure_codes == (NO_MANIFEST,)


def test_unsigned_file_is_missing(unsigned: Path, anchor: bytes) -> None:
    check = verify_video(unsigned, anchor)
    assert check == Verification("Missing", None, None, (), None, (NO_MANIFEST,))
    assert not check.trusted and not check.ai_generated


@pytest.mark.parametrize(
    "content",
    [b"", b"hello" * 200, os.urandom(4096), b"\x00\x00\x00\x18ftypisom" + bytes(64)],
    ids=["empty", "text", "random", "bare-ftyp"],
)
def test_undecodable_input_is_reported_not_raised(
    content: bytes, anchor: bytes, tmp_path: Path
) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    check = verify_video(path, anchor)
    assert check.state in {"Invalid", "Missing"}
    assert check.failure_codes
    assert not check.trusted


def test_truncated_signed_file_is_not_trusted(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    path = tmp_path / "half.mp4"
    path.write_bytes(signed.read_bytes()[: signed.stat().st_size // 2])
    check = verify_video(path, anchor)
    assert check.state == "Invalid"
    assert check.failure_codes


def test_missing_file_raises(tmp_path: Path, anchor: bytes) -> None:
    with pytest.raises(FileNotFoundError):
        verify_video(tmp_path / "absent.mp4", anchor)
    with pytest.raises(FileNotFoundError):
        verify_file(tmp_path / "absent.mp4", anchor)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_images_other_tools_signed_verify(
    fmt: str, chain: CertChain, anchor: bytes, tmp_path: Path
) -> None:
    image = sign_image(chain, fmt, tmp_path / "picture")  # named without an extension
    check = verify_file(image, anchor)
    assert check.state == "Trusted", check.failure_codes
    assert check.generator == "another tool"
    assert check.alive_assertion is None
    data = bytearray(image.read_bytes())
    data[len(data) // 2] ^= 0xFF  # in the pixel data, after the manifest
    tampered = tmp_path / "tampered"
    tampered.write_bytes(bytes(data))
    assert verify_file(tampered, anchor).state == "Invalid"


def test_verify_file_reads_mp4_by_content(signed: Path, anchor: bytes, tmp_path: Path) -> None:
    renamed = tmp_path / "video.bin"
    renamed.write_bytes(signed.read_bytes())
    assert verify_file(renamed, anchor).trusted


def test_a_file_no_c2pa_format_holds_is_invalid(tmp_path: Path, anchor: bytes) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text, no media at all")
    assert media_type(path.read_bytes()) is None
    assert verify_file(path, anchor) == Verification(
        "Invalid", None, None, (), None, (UNKNOWN_FORMAT,)
    )
