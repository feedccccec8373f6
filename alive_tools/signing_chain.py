"""Development C2PA signing chain: an ES256 root CA -> intermediate CA -> leaf, made on demand.

Only the embedded stack, the tests and ``alive dev-chain`` make one: the provenance service
never does (without signing settings it refuses to start). Production mounts a real chain
(docs/provenance.md). ``ensure_dev_chain`` reuses a valid chain and only mints what is
missing, expired or unreadable, in the layout the service reads (``cert_dir``: chain.pem and
signer.key) plus root.pem, the trust anchor; ``issue_leaf`` certifies a key held elsewhere
(an external signer's). The root's private key is discarded once the intermediate is signed: nothing
else ever needs it, and a leaked dev root key could mint certificates every reviewer trusts.
The intermediate key is kept (0600) so an expiring leaf is renewed under the same root, and
the trust anchor that reviewers and clients hold stays valid.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from services.provenance.signing import CHAIN_FILE, KEY_FILE

ROOT_FILE = "root.pem"
INTERMEDIATE_FILE = "intermediate.pem"
INTERMEDIATE_KEY_FILE = "intermediate.key"

ROOT_LIFETIME = timedelta(days=3650)
INTERMEDIATE_LIFETIME = timedelta(days=1825)
LEAF_LIFETIME = timedelta(days=365)
# Without a timestamp authority a signature turns Invalid when the leaf expires, so a leaf
# this close to expiry is renewed rather than used to sign videos that would soon fail.
LEAF_RENEW_BEFORE = timedelta(days=30)
# Backdating covers clock skew between the signing host and a verifier.
BACKDATE = timedelta(minutes=5)

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")


@dataclass(frozen=True)
class CertChain:
    """Paths of a signing chain; ``chain_pem`` is leaf then intermediate, as C2PA signs with."""

    root_cert: Path
    chain_pem: Path
    key_pem: Path

    @classmethod
    def in_directory(cls, directory: Path) -> CertChain:
        """The chain laid out under ``directory`` with this module's file names."""
        return cls(directory / ROOT_FILE, directory / CHAIN_FILE, directory / KEY_FILE)


def _now() -> datetime:
    return datetime.now(UTC)


def ensure_dev_chain(directory: Path, *, organisation: str = "Alive development") -> CertChain:
    """Returns a usable development chain in ``directory``, creating or renewing it if needed.

    A valid chain is returned untouched (``organisation`` only names newly made certificates).
    An unusable leaf is re-issued under the existing intermediate; an unusable root or
    intermediate (or a missing intermediate key) replaces the whole chain, which changes
    the trust anchor; so never point it at a directory holding a mounted production chain.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    chain = CertChain.in_directory(directory)
    with _locked(directory):
        now = _now()
        authority = _load_authority(directory, now)
        if authority is None:
            authority = _new_authority(directory, organisation, now)
        elif _leaf_usable(chain, authority[0], now):
            return chain
        key = ec.generate_private_key(ec.SECP256R1())
        # Key first: a crash before the chain is written leaves a key/cert mismatch that
        # _leaf_usable rejects, so the leaf is simply issued again.
        _write(chain.key_pem, _key_pem(key), 0o600)
        _write(chain.chain_pem, _leaf_chain(authority, key.public_key(), organisation, now), 0o644)
    return chain


def issue_leaf(
    directory: Path,
    public_key: ec.EllipticCurvePublicKey,
    out: Path,
    *,
    lifetime: timedelta = LEAF_LIFETIME,
    organisation: str = "Alive development",
) -> Path:
    """Certifies ``public_key`` (whose private half is held elsewhere, e.g. by an external
    signer) under the development chain in ``directory`` (made if needed); writes the chain
    (leaf, intermediate) to ``out`` and returns it. A short ``lifetime`` makes a certificate
    that expires soon."""
    ensure_dev_chain(directory, organisation=organisation)
    with _locked(directory):
        authority = _load_authority(directory, _now())
    assert authority is not None  # ensure_dev_chain just made it usable
    _write(out, _leaf_chain(authority, public_key, organisation, _now(), lifetime), 0o644)
    return out


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Several provenance workers may share a cert directory; without the lock each could
    # mint its own root and sign with a chain the others' trust anchor does not match.
    fd = os.open(directory / ".lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _load_authority(
    directory: Path, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The intermediate certificate and key if they and the root are usable, else None."""
    try:
        root = x509.load_pem_x509_certificate((directory / ROOT_FILE).read_bytes())
        intermediate = x509.load_pem_x509_certificate((directory / INTERMEDIATE_FILE).read_bytes())
        key = _load_key(directory / INTERMEDIATE_KEY_FILE)
    except (OSError, ValueError):
        return None
    usable = (
        _current(root, now, LEAF_RENEW_BEFORE)
        and _current(intermediate, now, LEAF_RENEW_BEFORE)
        and _issued_by(intermediate, root)
        and _same_key(intermediate, key)
    )
    return (intermediate, key) if usable else None


def _leaf_usable(chain: CertChain, intermediate: x509.Certificate, now: datetime) -> bool:
    try:
        certs = x509.load_pem_x509_certificates(chain.chain_pem.read_bytes())
        key = _load_key(chain.key_pem)
    except (OSError, ValueError):
        return False
    leaf = certs[0]
    return (
        certs[1:] == [intermediate]
        and _current(leaf, now, LEAF_RENEW_BEFORE)
        and _issued_by(leaf, intermediate)
        and _same_key(leaf, key)
    )


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    return key


def _current(cert: x509.Certificate, now: datetime, margin: timedelta) -> bool:
    return cert.not_valid_before_utc <= now and now + margin < cert.not_valid_after_utc


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    return cert.public_key() == key.public_key()


def _new_authority(
    directory: Path, organisation: str, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = _name(f"{organisation} Root CA", organisation)
    root = _ca_cert(root_name, root_key, root_name, root_key, None, 1, now, ROOT_LIFETIME)
    key = ec.generate_private_key(ec.SECP256R1())
    intermediate = _ca_cert(
        _name(f"{organisation} Intermediate CA", organisation),
        key,
        root_name,
        root_key,
        root,
        0,
        now,
        INTERMEDIATE_LIFETIME,
    )
    # Root last: a crash part-way leaves a root that did not sign the intermediate on disk,
    # which _load_authority rejects, so the next call starts again from scratch.
    _write(directory / INTERMEDIATE_KEY_FILE, _key_pem(key), 0o600)
    _write(directory / INTERMEDIATE_FILE, _cert_pem(intermediate), 0o644)
    _write(directory / ROOT_FILE, _cert_pem(root), 0o644)
    return intermediate, key


def _leaf_chain(
    authority: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    public_key: ec.EllipticCurvePublicKey,
    organisation: str,
    now: datetime,
    lifetime: timedelta = LEAF_LIFETIME,
) -> bytes:
    """A leaf certificate for ``public_key`` and the intermediate, PEM, as C2PA signs with."""
    intermediate, issuer_key = authority
    leaf = (
        _builder(
            _name(f"{organisation} Video Signer", organisation),
            public_key,
            intermediate.subject,
            now,
            min(now + lifetime, intermediate.not_valid_after_utc),
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION, DOCUMENT_SIGNING]),
            critical=False,
        )
        .add_extension(_authority_key_id(intermediate), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return _cert_pem(leaf) + _cert_pem(intermediate)


def _ca_cert(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    path_length: int,
    now: datetime,
    lifetime: timedelta,
) -> x509.Certificate:
    aki = (
        _authority_key_id(issuer_cert)
        if issuer_cert is not None
        else x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key())
    )
    return (
        _builder(subject, key.public_key(), issuer, now, now + lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(aki, critical=False)
        .sign(issuer_key, hashes.SHA256())
    )


def _builder(
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    now: datetime,
    not_after: datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    """A KeyUsage extension with only the named uses (certificates for C2PA chains)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
        ]
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    # c2pa expects an unencrypted PKCS#8 key ("BEGIN PRIVATE KEY").
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    # Written beside the target with its final mode from the start, then renamed, so a key
    # is never readable by others, not even briefly, and a reader never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed the mode given to os.open
    os.replace(tmp, path)
