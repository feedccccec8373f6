"""The prompt checkpoint's term matching."""

from __future__ import annotations

import pytest

from services.moderation.prompt.terms import DEFAULT_TERMS, TermList, words_of

TERMS = TermList.load(DEFAULT_TERMS)


def codes(prompt: str) -> list[str]:
    return [c.reason_code for c in TERMS.matches(prompt)]


def test_words_are_normalised() -> None:
    assert words_of("K1LL the Crème") == ["kill", "the", "creme"]
    assert words_of("n u d e beach") == ["nude", "beach"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("make this photo come alive", []),
        ("waves crashing at sunset", []),
        ("show off her skills", []),  # 'kill' inside a word is not the word
        ("a shooting star over the sea", []),
        ("a man with a gun", ["PROMPT_WEAPONS"]),
        ("make her N.U.D.E", ["PROMPT_SEXUAL"]),
        ("a g-u-n and blood splatter", ["PROMPT_VIOLENCE", "PROMPT_WEAPONS"]),
        ("K1LL everyone", ["PROMPT_VIOLENCE"]),
        ("make it a deep fake of the president", ["PROMPT_DECEPTION"]),
    ],
)
def test_policy_terms(prompt: str, expected: list[str]) -> None:
    assert sorted(codes(prompt)) == sorted(expected)
