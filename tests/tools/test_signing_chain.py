"""Tests for the development C2PA chain: profile, permissions, idempotence, renewal, a leaf for
a key held elsewhere, and `alive dev-chain`."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID

from alive.blobs import LocalBlobStore
from alive_tools import signing_chain as certs
from alive_tools.cli import main
from alive_tools.signing_chain import CertChain, ensure_dev_chain
from services.provenance.settings import ProvenanceSettings
from services.provenance.stage import ProvenanceStage


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _chain(chain: CertChain) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
    leaf, intermediate = x509.load_pem_x509_certificates(chain.chain_pem.read_bytes())
    return leaf, intermediate, x509.load_pem_x509_certificate(chain.root_cert.read_bytes())


def _snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in directory.iterdir()}


def _shift_clock(monkeypatch: pytest.MonkeyPatch, delta: timedelta) -> None:
    later = datetime.now(UTC) + delta
    monkeypatch.setattr(certs, "_now", lambda: later)


def test_chain_files_and_permissions(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    chain = ensure_dev_chain(directory)
    assert chain == CertChain.in_directory(directory)
    assert _mode(directory) == 0o700
    assert _mode(chain.key_pem) == 0o600
    assert _mode(directory / certs.INTERMEDIATE_KEY_FILE) == 0o600
    key = serialization.load_pem_private_key(chain.key_pem.read_bytes(), password=None)
    leaf, _, _ = _chain(chain)
    assert key.public_key() == leaf.public_key()


def test_second_call_changes_nothing(tmp_path: Path) -> None:
    first = ensure_dev_chain(tmp_path)
    before = _snapshot(tmp_path)
    assert ensure_dev_chain(tmp_path, organisation="Someone else") == first
    assert _snapshot(tmp_path) == before


def test_certificates_have_the_c2pa_profile(tmp_path: Path) -> None:
    leaf, intermediate, root = _chain(ensure_dev_chain(tmp_path, organisation="Test Org"))
    for cert in (leaf, intermediate, root):
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        assert key.curve.name == "secp256r1"
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)
    root.verify_directly_issued_by(root)

    ext = leaf.extensions
    assert ext.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature
    assert not (usage.value.key_cert_sign or usage.value.crl_sign or usage.value.content_commitment)
    assert set(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.EMAIL_PROTECTION,
        x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36"),
    }
    for cert, path_length in ((intermediate, 0), (root, 1)):
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        assert constraints.value.path_length == path_length
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    for cert, issuer in ((leaf, intermediate), (intermediate, root), (root, root)):
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        assert aki.key_identifier == ski.digest
    assert "Test Org" in leaf.subject.rfc4514_string()

    def lifetime(cert: x509.Certificate) -> timedelta:
        return cert.not_valid_after_utc - cert.not_valid_before_utc

    assert timedelta(days=364) < lifetime(leaf) < timedelta(days=367)
    assert timedelta(days=3649) < lifetime(root) < timedelta(days=3652)


def test_root_private_key_is_not_kept(tmp_path: Path) -> None:
    chain = ensure_dev_chain(tmp_path)
    _, _, root = _chain(chain)
    for path in tmp_path.iterdir():
        if b"PRIVATE KEY" in path.read_bytes():
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            assert key.public_key() != root.public_key(), path


def test_unreadable_leaf_is_reissued_under_the_same_root(tmp_path: Path) -> None:
    chain = ensure_dev_chain(tmp_path)
    root_pem, old_key = chain.root_cert.read_bytes(), chain.key_pem.read_bytes()
    chain.chain_pem.write_bytes(b"not a certificate")
    assert ensure_dev_chain(tmp_path) == chain
    assert chain.root_cert.read_bytes() == root_pem
    assert chain.key_pem.read_bytes() != old_key
    leaf, intermediate, root = _chain(chain)
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)


def test_leaf_close_to_expiry_is_renewed_under_the_same_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = ensure_dev_chain(tmp_path)
    root_pem, chain_pem = chain.root_cert.read_bytes(), chain.chain_pem.read_bytes()
    _shift_clock(monkeypatch, timedelta(days=350))
    ensure_dev_chain(tmp_path)
    assert chain.root_cert.read_bytes() == root_pem
    assert chain.chain_pem.read_bytes() != chain_pem
    leaf, _, _ = _chain(chain)
    assert leaf.not_valid_after_utc > datetime.now(UTC) + timedelta(days=600)


def test_expired_authority_replaces_the_whole_chain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = ensure_dev_chain(tmp_path)
    root_pem = chain.root_cert.read_bytes()
    _shift_clock(monkeypatch, timedelta(days=6 * 365))
    ensure_dev_chain(tmp_path)
    assert chain.root_cert.read_bytes() != root_pem
    leaf, intermediate, root = _chain(chain)
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)


def test_issue_leaf_certifies_a_key_held_elsewhere(tmp_path: Path) -> None:
    outside = ec.generate_private_key(ec.SECP256R1())
    out = certs.issue_leaf(tmp_path / "dev", outside.public_key(), tmp_path / "chain.pem")
    leaf, intermediate = x509.load_pem_x509_certificates(out.read_bytes())
    root = x509.load_pem_x509_certificate((tmp_path / "dev" / certs.ROOT_FILE).read_bytes())
    assert leaf.public_key() == outside.public_key()
    leaf.verify_directly_issued_by(intermediate)
    intermediate.verify_directly_issued_by(root)


def test_the_dev_chain_command_makes_settings_a_service_starts_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dev-chain", str(tmp_path / "chain")])
    assert exited.value.code == 0
    lines = dict(line.split("=", 1) for line in capsys.readouterr().out.splitlines())
    assert lines == {
        "ALIVE_PROVENANCE__CERT_DIR": str((tmp_path / "chain").resolve()),
        "ALIVE_PROVENANCE__TRUST_ANCHOR_PATH": str((tmp_path / "chain" / "root.pem").resolve()),
    }
    settings = ProvenanceSettings(
        cert_dir=Path(lines["ALIVE_PROVENANCE__CERT_DIR"]),
        trust_anchor_path=Path(lines["ALIVE_PROVENANCE__TRUST_ANCHOR_PATH"]),
    )
    ProvenanceStage(settings, LocalBlobStore(tmp_path / "blobs"))  # starts: no error
