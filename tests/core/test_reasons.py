"""Reason codes are a contract: the docs list exactly the codes the code has, and a test
asserts each one."""

from __future__ import annotations

import re
from pathlib import Path

from alive.reasons import ReasonCode

ROOT = Path(__file__).resolve().parents[2]


def documented_codes() -> set[str]:
    """The codes in the first column of the tables of docs/reason-codes.md."""
    page = (ROOT / "docs" / "reason-codes.md").read_text()
    first_cells = [line.split("|")[1] for line in page.splitlines() if line.startswith("| `")]
    return {code for cell in first_cells for code in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)}


def test_the_docs_list_exactly_the_codes_the_code_has() -> None:
    assert documented_codes() == {c.value for c in ReasonCode}


def test_every_code_is_asserted_by_some_test() -> None:
    tests = [p for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name]
    text = "\n".join(p.read_text() for p in tests)
    untested = [
        code.value
        for code in ReasonCode
        if f"ReasonCode.{code.name}" not in text and f'"{code.value}"' not in text
    ]
    # Prompt categories are asserted one by one from the term file
    # (tests/services/moderation/test_prompt_stage.py), not by name.
    assert [c for c in untested if not c.startswith("PROMPT_")] == []
