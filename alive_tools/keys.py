"""Development keys, made on first use as the C2PA development chain is:

- attestation keys: one Ed25519 key per attesting stage and the trust file listing their
  public keys (alive/attestation.py); the stage harness makes a set in memory;
- the gRPC API's: a TLS certificate for localhost signed by a development CA, a token
  issuer key with its JWKS, and the job id key (services/ingest);
- development tokens, minted with the issuer key (``alive token``, and the CLI's own);
- the blob keyring: the key-encryption key every blob's data key is wrapped with
  (alive/encryption.py).

Production keys come from a secret store and a real identity provider, one secret per
service (docs/security.md); nothing here is used there.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from alive.attestation import Keyring, key_id, private_key_pem, public_key_text
from alive.encryption import new_keyring_document
from alive.pipeline import PIPELINE
from alive.v1.events_pb2 import Job, Verdict
from services.ingest.settings import IngestSettings
from services.review.web.auth import hash_password

TRUST_FILE = "attestation-trust.json"
BLOB_KEYRING_FILE = "blob-keyring.json"


class StageKeys:
    """A private key for every attesting stage of the pipeline."""

    def __init__(self, private: Mapping[str, Ed25519PrivateKey] | None = None) -> None:
        self.private = (
            dict(private)
            if private is not None
            else {spec.name: Ed25519PrivateKey.generate() for spec in PIPELINE if spec.attests}
        )

    def trust_document(self) -> dict[str, list[str]]:
        return {name: [public_key_text(k.public_key())] for name, k in self.private.items()}

    def keyring(self, stage: str) -> Keyring:
        """The keyring the stage would load: its own key, and every stage's public key."""
        trusted = {
            name: {key_id(k.public_key()): k.public_key()} for name, k in self.private.items()
        }
        return Keyring(self.private.get(stage), trusted)

    def attest(
        self,
        job: Job,
        *stages: str,
        verdict: Verdict.ValueType = Verdict.PASS,
        scores: Mapping[str, float] | None = None,
    ) -> Job:
        """Adds the attestations ``stages`` would have made on ``job`` as it is now (for a
        test that starts a job part-way down the pipeline), with ``scores`` when given."""
        for name in stages:
            spec = PIPELINE.stage(name)
            attestation = self.keyring(name).attest(spec, job, verdict, {}, scores)
            job.attestations.append(attestation)
        return job


def ensure_key_dir(key_dir: Path) -> dict[str, Path]:
    """Each attesting stage's private key file in ``key_dir`` (made when missing, readable by
    the owner only) and the trust file beside them; returns the key paths by stage."""
    key_dir.mkdir(parents=True, exist_ok=True)
    paths = {spec.name: key_dir / f"{spec.name}.pem" for spec in PIPELINE if spec.attests}
    trust = key_dir / TRUST_FILE
    if not (trust.exists() and all(p.exists() for p in paths.values())):
        keys = StageKeys()
        for name, path in paths.items():
            _write(path, private_key_pem(keys.private[name]), 0o600)
        trust.write_text(json.dumps(keys.trust_document(), indent=2))
    return paths


def ensure_blob_keyring(key_dir: Path) -> Path:
    """The blob keyring file in ``key_dir`` (a fresh key-encryption key, made when missing,
    readable by the owner only)."""
    path = key_dir / BLOB_KEYRING_FILE
    if not path.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        document = new_keyring_document(f"dev-{int(time.time())}")
        _write(path, json.dumps(document, indent=2).encode(), 0o600)
    return path


# The issuer and audience the API expects unless configured otherwise.
DEV_ISSUER = IngestSettings.model_fields["jwt_issuer"].default
DEV_AUDIENCE = IngestSettings.model_fields["jwt_audience"].default
DEV_KID = "alive-dev-1"


@dataclass(frozen=True)
class ApiKeys:
    """The embedded API's development credentials, as files."""

    tls_ca: Path  # what clients trust
    tls_cert: Path
    tls_key: Path
    issuer_key: Path  # signs development tokens
    jwks: Path  # what the API checks tokens against
    job_id_key: Path

    @classmethod
    def in_directory(cls, key_dir: Path) -> ApiKeys:
        return cls(
            key_dir / "api-ca.pem",
            key_dir / "api-cert.pem",
            key_dir / "api-key.pem",
            key_dir / "token-issuer.pem",
            key_dir / "jwks.json",
            key_dir / "job-id.key",
        )


def ensure_api_keys(key_dir: Path) -> ApiKeys:
    """The API's development credentials in ``key_dir``, made when any is missing."""
    keys = ApiKeys.in_directory(key_dir)
    if all(p.exists() for p in vars(keys).values()):
        return keys
    key_dir.mkdir(parents=True, exist_ok=True)
    ca = DevCa.new("Alive development API CA")
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(keys.tls_ca, ca.cert_pem, 0o644)
    _write(keys.tls_cert, ca.issue(server_key, "localhost", server=True), 0o644)
    _write(keys.tls_key, key_pem(server_key), 0o600)
    issuer = Ed25519PrivateKey.generate()
    _write(keys.issuer_key, private_key_pem(issuer), 0o600)
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(issuer.public_key()))
    jwk |= {"kid": DEV_KID, "use": "sig", "alg": "EdDSA"}
    _write(keys.jwks, json.dumps({"keys": [jwk]}, indent=2).encode(), 0o644)
    _write(keys.job_id_key, secrets.token_hex(32).encode(), 0o600)
    return keys


def mint_token(
    issuer_key: Path,
    subject: str,
    scopes: Iterable[str],
    *,
    ttl_s: int = 3600,
    claims: Mapping[str, str] | None = None,
) -> str:
    """A development bearer token for ``subject``, signed by the development issuer."""
    now = int(time.time())
    payload = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_s,
        "scope": " ".join(scopes),
        **(claims or {}),
    }
    key = serialization.load_pem_private_key(issuer_key.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": DEV_KID})


@dataclass(frozen=True)
class DevCa:
    """A development certificate authority: TLS certificates for loopback servers and, for
    mutual TLS, clients."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def new(cls, common_name: str) -> DevCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, key: ec.EllipticCurvePrivateKey, common_name: str, *, server: bool) -> bytes:
        """A certificate for ``key`` (PEM): a server's names localhost and the loopback
        addresses; a client's only its common name."""
        now = datetime.now(UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=825))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if server:
            names: list[x509.GeneralName] = [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def decision_key_paths(key_dir: Path) -> tuple[Path, Path]:
    """The review web app's decision-signing key and its public half."""
    return key_dir / "review-web-decisions.pem", key_dir / "review-web-decisions.pub.pem"


def ensure_decision_keys(key_dir: Path) -> tuple[Path, Path]:
    """The review web app's Ed25519 decision key (made when missing) and its public key."""
    private, public = decision_key_paths(key_dir)
    if not (private.exists() and public.exists()):
        key_dir.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        _write(private, private_key_pem(key), 0o600)
        _write(
            public,
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            0o644,
        )
    return private, public


@dataclass(frozen=True)
class Reviewers:
    """Development reviewer accounts: passwords (for people and tests) and their hashes
    (for the app)."""

    passwords: dict[str, str]
    hashes: dict[str, str]


DEV_REVIEWERS = ("reviewer", "reviewer2")


def ensure_reviewers(path: Path) -> Reviewers:
    """Two development reviewer accounts with random passwords, kept in ``path`` (owner
    only); the app gets argon2 hashes only."""
    if path.exists():
        passwords = {str(k): str(v) for k, v in json.loads(path.read_text()).items()}
    else:
        passwords = {name: secrets.token_urlsafe(12) for name in DEV_REVIEWERS}
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, json.dumps(passwords, indent=2).encode(), 0o600)
    return Reviewers(passwords, {name: hash_password(p) for name, p in passwords.items()})
