"""C2PA verification, shared by the provenance and review services, tests and ``alive verify``.

``verify_video`` reads the manifest store embedded in an MP4, ``verify_file`` that of any
file C2PA signs (JPEG, PNG, MP4 and the other formats the library reads, told apart by their
first bytes, not their name). Both validate it against the trust anchors (the root
certificates Alive signs under, PEM, one or several) and report what a reviewer needs: the
validation state, whether the first ``c2pa.created`` action declares AI generation, the
generator, the signer and signing time, the ingredients and Alive's own assertion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import c2pa

DIGITAL_SOURCE_TYPE_AI = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ALIVE_ASSERTION_LABEL = "org.alive.generation"

TRUSTED = "Trusted"
VALID = "Valid"
INVALID = "Invalid"
MISSING = "Missing"

# Codes of Alive's own for outcomes the C2PA validator reports as exceptions, not statuses.
NO_MANIFEST = "alive.manifest.missing"
UNREADABLE = "alive.manifest.unreadable"
UNKNOWN_FORMAT = "alive.format.unknown"

# What each failure code means, for people (``alive verify``); other codes print as they are.
PLAIN_WORDS = {
    NO_MANIFEST: "no C2PA manifest: never signed, or stripped (platforms that re-encode drop it)",
    UNREADABLE: "a manifest is there but cannot be read",
    UNKNOWN_FORMAT: "not a file format C2PA signs (JPEG, PNG, MP4, ...)",
    "signingCredential.untrusted": "the signer's certificate does not lead to a trusted root",
    "signingCredential.expired": (
        "the signing certificate has expired and no timestamp proves the file was signed before"
    ),
    "signingCredential.revoked": "the signing certificate was revoked",
    "signingCredential.invalid": "the signing certificate is not fit for signing",
    "claimSignature.mismatch": "the signature does not match the manifest: it was edited",
    "claimSignature.outsideValidity": "signed outside the signing certificate's validity",
    "assertion.bmffHash.mismatch": "the media bytes changed after signing",
    "assertion.dataHash.mismatch": "the file's bytes changed after signing",
    "assertion.hashedURI.mismatch": "an assertion was edited after signing",
    "assertion.missing": "an assertion the manifest names is missing",
    "timeStamp.mismatch": "the timestamp does not match the signature",
    "timeStamp.outsideValidity": "the timestamp lies outside its authority's certificate",
}

_ACTIONS_LABELS = ("c2pa.actions.v2", "c2pa.actions")
_TIMESTAMP_VALIDATED = "timeStamp.validated"

# Where the embedded default keeps the development signing chain, and its root: the trust
# anchor the review service verifies against unless set otherwise.
DEV_CERT_DIR = Path(".alive/certs")
DEV_TRUST_ANCHOR = DEV_CERT_DIR / "root.pem"

# First bytes -> media type, for files whose name says nothing (a download without an
# extension). The offset matters for ISO BMFF (MP4, MOV, HEIC: "ftyp" after the box size).
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF8", "image/gif"),
    (8, b"WEBP", "image/webp"),
    (8, b"WAVE", "audio/wav"),
    (0, b"II*\x00", "image/tiff"),
    (0, b"MM\x00*", "image/tiff"),
    (4, b"ftypheic", "image/heic"),
    (4, b"ftypavif", "image/avif"),
    (4, b"ftypqt", "video/quicktime"),
    (4, b"ftyp", "video/mp4"),
)


@dataclass(frozen=True)
class Verification:
    """What a file's C2PA manifest says and whether it can be believed."""

    state: str  # "Trusted" | "Valid" (intact, signer untrusted) | "Invalid" | "Missing"
    digital_source_type: str | None  # from the first c2pa.created action
    generator: str | None  # software agent name of that action
    ingredient_relationships: tuple[str, ...]
    alive_assertion: dict[str, object] | None
    failure_codes: tuple[str, ...]  # validation status codes explaining a non-Trusted state
    generator_version: str | None = None
    signer: str | None = None  # the signing certificate's common name and organisation
    signed_at: str | None = None  # RFC 3339, from a timestamp authority's token only
    timestamped: bool = False  # a timestamp token was validated
    claimed_at: str | None = None  # the created action's own "when": the signer's claim
    ingredient_titles: tuple[str, ...] = ()

    @property
    def trusted(self) -> bool:
        return self.state == TRUSTED

    @property
    def ai_generated(self) -> bool:
        return self.digital_source_type == DIGITAL_SOURCE_TYPE_AI


def _empty(state: str, *codes: str) -> Verification:
    return Verification(state, None, None, (), None, codes)


def verify_video(path: Path, trust_anchors_pem: bytes) -> Verification:
    """Verifies the MP4 at ``path`` against the root certificate(s) ``trust_anchors_pem``.

    Never raises for the file's content: no manifest gives "Missing", an unparsable one
    "Invalid", each with an explaining code. A file that cannot be opened raises OSError.
    """
    return _verify(path, "video/mp4", trust_anchors_pem)


def verify_file(path: Path, trust_anchors_pem: bytes) -> Verification:
    """``verify_video`` for any format C2PA signs, recognised by its first bytes."""
    with path.open("rb") as stream:
        head = stream.read(16)
    mime = media_type(head)
    if mime is None:
        return _empty(INVALID, UNKNOWN_FORMAT)
    return _verify(path, mime, trust_anchors_pem)


def media_type(head: bytes) -> str | None:
    """The media type the first bytes of a file say it is, among those C2PA signs."""
    for offset, magic, mime in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return mime
    return None


def explain(code: str) -> str:
    """A failure code in plain words (the code itself when it has none)."""
    return PLAIN_WORDS.get(code.split(":", 1)[0], code)


def _verify(path: Path, mime: str, trust_anchors_pem: bytes) -> Verification:
    # Verification must not depend on (or leak reads to) a URL the file names.
    settings: dict[str, Any] = {"verify": {"remote_manifest_fetch": False}}
    if trust_anchors_pem.strip():
        settings["trust"] = {"user_anchors": trust_anchors_pem.decode("ascii")}
    with path.open("rb") as stream, c2pa.Context.from_dict(settings) as context:
        try:
            with c2pa.Reader(mime, stream, context=context) as reader:
                store = json.loads(reader.json())
        except c2pa.C2paError.ManifestNotFound:
            return _empty(MISSING, NO_MANIFEST)
        except c2pa.C2paError as exc:
            # The error's kind (Decoding, Io, ...) says more than its free-text message.
            kind = type(exc).__name__.removeprefix("_C2pa").removeprefix("C2pa")
            return _empty(INVALID, f"{UNREADABLE}:{kind}")
    return _from_store(store)


def _from_store(store: dict[str, Any]) -> Verification:
    state = store.get("validation_state") or INVALID
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    created = _first_created_action(manifest)
    agent = created.get("softwareAgent")
    # Actions v1 name the agent with a plain string, v2 with a {name, version} map.
    generator = agent.get("name") if isinstance(agent, dict) else agent
    version = agent.get("version") if isinstance(agent, dict) else None
    alive = _assertion(manifest, ALIVE_ASSERTION_LABEL)
    signature = manifest.get("signature_info") or {}
    ingredients = [i for i in manifest.get("ingredients", []) if isinstance(i, dict)]
    successes = _codes(store, "success")
    timestamped = _TIMESTAMP_VALIDATED in successes
    return Verification(
        state=state,
        digital_source_type=created.get("digitalSourceType"),
        generator=generator if isinstance(generator, str) else None,
        ingredient_relationships=tuple(str(i.get("relationship")) for i in ingredients),
        alive_assertion=alive if isinstance(alive, dict) else None,
        failure_codes=_codes(store, "failure") if state != TRUSTED else (),
        generator_version=version if isinstance(version, str) else None,
        signer=_signer(signature),
        signed_at=str(signature["time"]) if timestamped and signature.get("time") else None,
        timestamped=timestamped,
        claimed_at=str(created["when"]) if created.get("when") else None,
        ingredient_titles=tuple(str(i.get("title", "")) for i in ingredients),
    )


def _signer(signature: dict[str, Any]) -> str | None:
    name, issuer = signature.get("common_name"), signature.get("issuer")
    if name and issuer and issuer not in name:
        return f"{name} ({issuer})"
    return str(name or issuer) if name or issuer else None


def _assertion(manifest: dict[str, Any], label: str) -> Any:
    for assertion in manifest.get("assertions", []):
        if assertion.get("label") == label:
            return assertion.get("data")
    return None


def _first_created_action(manifest: dict[str, Any]) -> dict[str, Any]:
    for label in _ACTIONS_LABELS:
        data = _assertion(manifest, label)
        if isinstance(data, dict):
            for action in data.get("actions", []):
                if isinstance(action, dict) and action.get("action") == "c2pa.created":
                    return action
    return {}


def _codes(store: dict[str, Any], kind: str) -> tuple[str, ...]:
    """The validation status codes of ``kind`` (success | failure), each once."""
    results = store.get("validation_results") or {}
    entries = list((results.get("activeManifest") or {}).get(kind, []))
    for delta in results.get("ingredientDeltas", []):
        entries += (delta.get("validationDeltas") or {}).get(kind, [])
    if kind == "failure":
        # Older readers report a flat list; it repeats the failures above when both exist.
        entries += store.get("validation_status", [])
    codes = (str(entry.get("code")) for entry in entries if isinstance(entry, dict))
    return tuple(dict.fromkeys(codes))
