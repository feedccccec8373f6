"""``alive verify FILE...``: what each file's C2PA manifest says and whether to believe it.

Works on any file C2PA signs (JPEG, PNG, MP4, ...), Alive's or another tool's. Trust anchors
are the root certificates to trust (``--trust-anchor``, repeatable; by default the embedded
stack's development root when there is one). Exit code: 0 every file Trusted; 1 any file
Invalid or without a manifest; else 2, some file intact but its signer not trusted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from alive.provenance import (
    DIGITAL_SOURCE_TYPE_AI,
    MISSING,
    TRUSTED,
    VALID,
    Verification,
    explain,
    verify_file,
)

TRUSTED_EXIT, INVALID_EXIT, UNTRUSTED_EXIT = 0, 1, 2
STATE_WORDS = {
    TRUSTED: "Trusted",
    VALID: "Valid but untrusted (intact; the signer is not one you trust)",
    MISSING: "no manifest",
}


def exit_code(checks: Sequence[Verification]) -> int:
    """The worst outcome of ``checks``: invalid or missing (1) over untrusted (2) over 0."""
    states = {check.state for check in checks}
    if states - {TRUSTED, VALID}:
        return INVALID_EXIT
    return UNTRUSTED_EXIT if VALID in states else TRUSTED_EXIT


def verify_files(paths: Sequence[Path], anchors_pem: bytes) -> list[tuple[Path, Verification]]:
    """Each path and its verification; an unreadable file is Invalid with the reason."""
    return [(path, _verify(path, anchors_pem)) for path in paths]


def _verify(path: Path, anchors_pem: bytes) -> Verification:
    try:
        return verify_file(path, anchors_pem)
    except OSError as exc:
        return Verification("Invalid", None, None, (), None, (f"unreadable: {exc.strerror}",))


def as_json(path: Path, check: Verification) -> dict[str, Any]:
    """One file's result for ``--json``: every field, the failures in plain words too."""
    out: dict[str, Any] = {"file": str(path), **asdict(check)}
    out["ai_generated"] = check.ai_generated
    out["failures"] = [{"code": code, "meaning": explain(code)} for code in check.failure_codes]
    return out


def as_text(path: Path, check: Verification) -> str:
    """One file's result for people."""
    lines = [f"{path}: {STATE_WORDS.get(check.state, check.state)}"]
    if check.signer or check.digital_source_type or check.generator:  # a manifest was read
        source = check.digital_source_type
        kind = source.rsplit("/", 1)[-1] if source else "not declared"
        ai = "yes" if source == DIGITAL_SOURCE_TYPE_AI else "no"
        lines.append(f"  AI-generated: {ai} (digital source type: {kind})")
        generator = " ".join(filter(None, (check.generator, check.generator_version)))
        lines.append(f"  generator: {generator or 'not named'}")
        lines.append(f"  signer: {check.signer or 'unknown'}")
        if check.timestamped:
            lines.append(f"  signed: {check.signed_at} (timestamped by a timestamp authority)")
        else:
            claimed = f"; the signer claims {check.claimed_at}" if check.claimed_at else ""
            lines.append(f"  signed: not timestamped{claimed}")
        ingredients = [
            f"{title or 'untitled'} ({relationship})"
            for title, relationship in zip(
                check.ingredient_titles, check.ingredient_relationships, strict=False
            )
        ]
        lines.append(f"  ingredients: {', '.join(ingredients) or 'none'}")
    for code in check.failure_codes:
        lines.append(f"  problem: {explain(code)} [{code}]")
    return "\n".join(lines)


def report(paths: Sequence[Path], anchors_pem: bytes, *, as_json_lines: bool) -> tuple[str, int]:
    """The text ``alive verify`` prints for ``paths`` and its exit code."""
    results = verify_files(paths, anchors_pem)
    if as_json_lines:
        text = json.dumps([as_json(path, check) for path, check in results], indent=2)
    else:
        text = "\n".join(as_text(path, check) for path, check in results)
    return text, exit_code([check for _, check in results])


def read_anchors(paths: Sequence[Path]) -> bytes:
    """The trust anchors' PEM, all files one after another."""
    return b"".join(path.read_bytes().rstrip(b"\n") + b"\n" for path in paths)
