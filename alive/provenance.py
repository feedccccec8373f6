"""C2PA verification of Alive videos, shared by the provenance and review services, tests and CLI.

``verify_video`` reads the manifest store embedded in an MP4, validates it against one trust
anchor (the root certificate Alive signs under) and reports what a reviewer needs: the
validation state, whether the first ``c2pa.created`` action declares AI generation, the
generator, the ingredients' relationships and Alive's own generation assertion.
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

_ACTIONS_LABELS = ("c2pa.actions.v2", "c2pa.actions")

# Where the embedded default keeps the development signing chain, and its root: the trust
# anchor the provenance and review services verify against unless set otherwise.
DEV_CERT_DIR = Path(".alive/certs")
DEV_TRUST_ANCHOR = DEV_CERT_DIR / "root.pem"


@dataclass(frozen=True)
class Verification:
    """What a video's C2PA manifest says and whether it can be believed."""

    state: str  # "Trusted" | "Valid" | "Invalid" | "Missing" (no manifest at all)
    digital_source_type: str | None  # from the first c2pa.created action
    generator: str | None  # software agent name of that action
    ingredient_relationships: tuple[str, ...]
    alive_assertion: dict[str, object] | None
    failure_codes: tuple[str, ...]  # validation status codes explaining a non-Trusted state

    @property
    def trusted(self) -> bool:
        return self.state == TRUSTED

    @property
    def ai_generated(self) -> bool:
        return self.digital_source_type == DIGITAL_SOURCE_TYPE_AI


def _empty(state: str, *codes: str) -> Verification:
    return Verification(state, None, None, (), None, codes)


def verify_video(path: Path, trust_anchor_pem: bytes) -> Verification:
    """Verifies the MP4 at ``path`` against the root certificate ``trust_anchor_pem``.

    Never raises for the file's content: no manifest gives "Missing", an unparsable one
    "Invalid", each with an explaining code. A file that cannot be opened raises OSError.
    """
    settings = {
        "trust": {"user_anchors": trust_anchor_pem.decode("ascii")},
        # Verification must not depend on (or leak reads to) a URL the file names.
        "verify": {"remote_manifest_fetch": False},
    }
    with path.open("rb") as stream, c2pa.Context.from_dict(settings) as context:
        try:
            with c2pa.Reader("video/mp4", stream, context=context) as reader:
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
    alive = _assertion(manifest, ALIVE_ASSERTION_LABEL)
    codes = _failure_codes(store) if state != TRUSTED else ()
    return Verification(
        state=state,
        digital_source_type=created.get("digitalSourceType"),
        generator=generator if isinstance(generator, str) else None,
        ingredient_relationships=tuple(
            str(ingredient.get("relationship")) for ingredient in manifest.get("ingredients", [])
        ),
        alive_assertion=alive if isinstance(alive, dict) else None,
        failure_codes=codes,
    )


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


def _failure_codes(store: dict[str, Any]) -> tuple[str, ...]:
    results = store.get("validation_results") or {}
    entries = list((results.get("activeManifest") or {}).get("failure", []))
    for delta in results.get("ingredientDeltas", []):
        entries += (delta.get("validationDeltas") or {}).get("failure", [])
    # Older readers report a flat list; it repeats the failures above when both exist.
    entries += store.get("validation_status", [])
    codes = (str(entry.get("code")) for entry in entries if isinstance(entry, dict))
    return tuple(dict.fromkeys(codes))
