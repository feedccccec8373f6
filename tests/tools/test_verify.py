"""``alive verify``: states in plain words, JSON, exit codes, many files, other tools' files."""

from __future__ import annotations

import json
import shutil
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alive.media import encode_h264, read_frames
from alive_tools.cli import main
from alive_tools.signing_chain import CertChain, ensure_dev_chain, issue_leaf
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import (
    CHAIN_FILE,
    VideoSigner,
    label_ai_generated,
    signer_from_settings,
)
from tests.provenance_support import EXTERNAL_KEY, FACTS, sign_image
from tests.support import photo_bytes, write_clip


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def chain(work: Path) -> CertChain:
    return ensure_dev_chain(work / "certs")


def _sign(work: Path, settings: ProvenanceSettings, out: Path) -> Path:
    if not (work / "labelled.mp4").exists():
        write_clip(work / "raw.mp4")
        label_ai_generated(work / "raw.mp4", work / "labelled.mp4")
        (work / "photo.png").write_bytes(photo_bytes(fmt="PNG"))
    VideoSigner(signer_from_settings(settings)).sign(
        work / "labelled.mp4", work / "photo.png", "image/png", FACTS, out
    )
    return out


@pytest.fixture(scope="module")
def signed(work: Path, chain: CertChain) -> Path:
    settings = ProvenanceSettings(cert_dir=work / "certs", trust_anchor_path=chain.root_cert)
    return _sign(work, settings, work / "signed.mp4")


def _run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["verify", *map(str, argv)])
    code = exited.value.code
    assert isinstance(code, int)
    return code, capsys.readouterr().out


def _edited(signed: Path, out: Path, at: int | None = None, append: bytes = b"") -> Path:
    data = bytearray(signed.read_bytes())
    if at is not None:
        data[at] ^= 0xFF
    out.write_bytes(bytes(data) + append)
    return out


def test_a_trusted_video_in_plain_words(
    signed: Path, chain: CertChain, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, signed, "--trust-anchor", chain.root_cert)
    assert code == 0
    assert f"{signed}: Trusted" in out
    assert "AI-generated: yes (digital source type: trainedAlgorithmicMedia)" in out
    assert f"generator: {FACTS.model_name} {FACTS.model_version}" in out
    assert "signer: Alive development Video Signer" in out
    assert f"signed: not timestamped; the signer claims {FACTS.created_at}" in out
    assert "ingredients: source photo (inputTo)" in out
    assert "problem" not in out


def test_json_for_many_files_and_the_worst_exit_code(
    signed: Path, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.mp4"
    shutil.copyfile(signed, copy)
    appended = _edited(signed, tmp_path / "appended.mp4", append=b"\x00" * 8)
    code, out = _run(capsys, signed, copy, appended, "--json", "--trust-anchor", chain.root_cert)
    results: list[dict[str, Any]] = json.loads(out)
    assert [r["file"] for r in results] == [str(signed), str(copy), str(appended)]
    assert [r["state"] for r in results] == ["Trusted", "Trusted", "Invalid"]
    assert results[0]["ai_generated"] is True
    assert results[0]["generator"] == FACTS.model_name
    assert results[0]["alive_assertion"]["video_id"] == FACTS.video_id
    assert results[2]["failures"] == [
        {"code": "assertion.bmffHash.mismatch", "meaning": "the media bytes changed after signing"}
    ]
    assert code == 1


def _mdat_middle(data: bytes) -> int:
    offset = 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        if data[offset + 4 : offset + 8] == b"mdat":
            return offset + size // 2
        offset += size
    raise AssertionError("no mdat box")


@pytest.mark.parametrize("tamper", ["media-byte", "appended", "assertion-edited"])
def test_tampering_is_invalid_with_the_reason(
    tamper: str,
    signed: Path,
    chain: CertChain,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = signed.read_bytes()
    edited = {
        "media-byte": lambda: _edited(signed, tmp_path / "t.mp4", at=_mdat_middle(data)),
        "appended": lambda: _edited(signed, tmp_path / "t.mp4", append=b"junk"),
        "assertion-edited": lambda: _edited(
            signed, tmp_path / "t.mp4", at=data.index(FACTS.video_id.encode())
        ),
    }[tamper]()
    reason = {
        "media-byte": "the media bytes changed after signing [assertion.bmffHash.mismatch]",
        "appended": "the media bytes changed after signing [assertion.bmffHash.mismatch]",
        "assertion-edited": "an assertion was edited after signing [assertion.hashedURI.mismatch]",
    }[tamper]
    code, out = _run(capsys, edited, "--trust-anchor", chain.root_cert)
    assert code == 1
    assert f"{edited}: Invalid" in out
    assert f"problem: {reason}" in out


def test_a_re_encoded_copy_says_no_manifest(
    signed: Path, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    transcoded = tmp_path / "transcoded.mp4"
    encode_h264(read_frames(signed), 12, transcoded, crf=28)
    code, out = _run(capsys, transcoded, "--trust-anchor", chain.root_cert)
    assert code == 1
    assert f"{transcoded}: no manifest" in out
    assert "platforms that re-encode drop it" in out


def test_a_wrong_trust_anchor_is_untrusted(
    signed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = ensure_dev_chain(tmp_path / "stranger", organisation="someone else").root_cert
    code, out = _run(capsys, signed, "--trust-anchor", stranger)
    assert code == 2
    assert "Valid but untrusted" in out
    assert "[signingCredential.untrusted]" in out
    # Trusted and untrusted together: the untrusted one decides.
    code, _ = _run(capsys, signed, signed, "--trust-anchor", stranger, "--trust-anchor", stranger)
    assert code == 2


def test_several_trust_anchors_any_may_vouch(
    signed: Path, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = ensure_dev_chain(tmp_path / "stranger", organisation="someone else").root_cert
    code, _ = _run(capsys, signed, "--trust-anchor", stranger, "--trust-anchor", chain.root_cert)
    assert code == 0


def test_an_expired_certificate_is_reported_clearly(
    work: Path, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert_dir = tmp_path / "short"
    cert_dir.mkdir()
    issue_leaf(
        work / "certs",
        EXTERNAL_KEY.public_key(),
        cert_dir / CHAIN_FILE,
        lifetime=timedelta(seconds=2),
    )
    settings = ProvenanceSettings(
        cert_dir=cert_dir,
        trust_anchor_path=chain.root_cert,
        external_signer="tests.provenance_support:external_sign",
    )
    video = _sign(work, settings, tmp_path / "short-lived.mp4")
    time.sleep(3)
    code, out = _run(capsys, video, "--trust-anchor", chain.root_cert)
    assert code == 1
    assert (
        "problem: the signing certificate has expired and no timestamp proves the file was "
        "signed before [signingCredential.expired]"
    ) in out


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_files_other_tools_signed(
    fmt: str, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = sign_image(chain, fmt, tmp_path / f"picture.{fmt.lower()}")
    code, out = _run(capsys, image, "--trust-anchor", chain.root_cert)
    assert code == 0
    assert "generator: another tool 9" in out


def test_without_a_trust_anchor_nothing_is_trusted(
    signed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .alive/certs/root.pem here
    code, out = _run(capsys, signed)
    assert code == 2
    assert "Valid but untrusted" in out


def test_a_missing_file_is_invalid_and_the_others_still_checked(
    signed: Path, chain: CertChain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _run(capsys, tmp_path / "absent.mp4", signed, "--trust-anchor", chain.root_cert)
    assert code == 1
    assert "absent.mp4: Invalid" in out
    assert f"{signed}: Trusted" in out
