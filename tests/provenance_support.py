"""Helpers the provenance tests share: generation facts, an external signer whose key lives in
this process's memory only (as a KMS client's would live in the KMS), and a real RFC 3161
timestamp authority on loopback: OpenSSL's ``openssl ts -reply`` behind a tiny HTTP server."""

from __future__ import annotations

import http.server
import io
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import c2pa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import Image

from alive.provenance import DIGITAL_SOURCE_TYPE_AI
from alive_tools.signing_chain import CertChain, key_usage
from services.provenance.signing import GenerationFacts

PROMPT = "a lighthouse at dusk, waves rolling in"
JOB_ID = "9f2c1e0d4b7a4e51a3c8d6f0b2e4a7c9"

FACTS = GenerationFacts(
    model_name="alive-motion",
    model_version="0.3.1",
    seed=424242,
    frames=12,
    fps=12,
    duration_ms=1000,
    width=64,
    height=112,
    checkpoints_passed=("moderation-photo", "moderation-prompt"),
    checkpoints_after_signing=("moderation-video",),
    policy_versions={"moderation-photo": "photo-7", "moderation-prompt": "prompt-12"},
    created_at="2025-06-01T12:00:00+00:00",
)

# The external signer's key: never written to a file, reachable only through external_sign.
EXTERNAL_KEY = ec.generate_private_key(ec.SECP256R1())


def external_sign(data: bytes) -> bytes:
    """What ``ALIVE_PROVENANCE__EXTERNAL_SIGNER=tests.provenance_support:external_sign`` calls."""
    return EXTERNAL_KEY.sign(data, ec.ECDSA(hashes.SHA256()))


def sign_image(chain: CertChain, fmt: str, out: Path) -> Path:
    """A JPEG or PNG signed with c2pa directly, as another tool would: its own manifest, no
    Alive assertion."""
    buffer = io.BytesIO()
    Image.new("RGB", (48, 32), (30, 90, 160)).save(buffer, format=fmt)
    mime = f"image/{fmt.lower()}"
    manifest = {
        "claim_generator_info": [{"name": "another tool", "version": "9"}],
        "format": mime,
        "assertions": [
            {
                "label": "c2pa.actions.v2",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": DIGITAL_SOURCE_TYPE_AI,
                            "softwareAgent": {"name": "another tool", "version": "9"},
                        }
                    ]
                },
            }
        ],
    }
    info = c2pa.C2paSignerInfo(
        c2pa.C2paSigningAlg.ES256, chain.chain_pem.read_bytes(), chain.key_pem.read_bytes(), None
    )
    with (
        c2pa.Signer.from_info(info) as signer,
        c2pa.Builder(manifest) as builder,
        out.open("w+b") as target,
    ):
        builder.sign(signer, mime, io.BytesIO(buffer.getvalue()), target)
    return out


@dataclass(frozen=True)
class TimestampAuthority:
    url: str
    root_pem: bytes  # what a verifier trusts the authority's tokens under
    requests: list[int]  # body sizes of the requests it answered


@contextmanager
def local_tsa(directory: Path) -> Iterator[TimestampAuthority]:
    """An RFC 3161 timestamp authority at http://127.0.0.1:<port>/ until the block ends."""
    _write_tsa_files(directory)
    answered: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            query = self.rfile.read(int(self.headers["Content-Length"]))
            answered.append(len(query))
            with tempfile.TemporaryDirectory() as work:
                query_file, reply_file = Path(work) / "q.tsq", Path(work) / "r.tsr"
                query_file.write_bytes(query)
                command = ["openssl", "ts", "-reply", "-config", str(directory / "tsa.cnf")]
                command += ["-queryfile", str(query_file), "-out", str(reply_file)]
                subprocess.run(
                    command,
                    check=True,
                    capture_output=True,
                )
                reply = reply_file.read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield TimestampAuthority(
            f"http://127.0.0.1:{server.server_address[1]}/",
            (directory / "tsa-root.pem").read_bytes(),
            answered,
        )
    finally:
        server.shutdown()
        server.server_close()


def _write_tsa_files(directory: Path) -> None:
    """A root CA and a timestamping certificate under it, and OpenSSL's TSA configuration."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Timestamp Root")])
    root = (
        _builder(root_name, root_name, root_key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Timestamp Authority")])
    cert = (
        _builder(name, root_name, key.public_key(), now)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        # C2PA's certificate profile wants the authority key id ("certificate params
        # incorrect" without it).
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )

    def pem(c: x509.Certificate) -> bytes:
        return c.public_bytes(serialization.Encoding.PEM)

    (directory / "tsa-root.pem").write_bytes(pem(root))
    (directory / "tsa.pem").write_bytes(pem(cert))
    (directory / "tsa-chain.pem").write_bytes(pem(cert) + pem(root))
    (directory / "tsa.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(
        f"""[tsa]
default_tsa = tsa_config
[tsa_config]
dir = {directory}
serial = $dir/serial
signer_cert = $dir/tsa.pem
certs = $dir/tsa-chain.pem
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256, sha384, sha512
accuracy = secs:1
ess_cert_id_alg = sha256
ordering = no
tsa_name = no
ess_cert_id_chain = no
"""
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: datetime
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )
