"""Folding text for matching (alive/text.py): every trick people use to write around a word
list comes out as the plain word."""

from __future__ import annotations

import pytest

from alive.text import match_tokens, merge_look_alikes


def matched(text: str) -> list[str]:
    return [merge_look_alikes(w) for w in match_tokens(text)]


@pytest.mark.parametrize(
    "written",
    [
        "kill",
        "KILL",
        "K1LL",
        "kiII",  # capital I for l
        "k i l l",
        "k-i-l-l",
        "k.i.l.l",
        "ki-ll",
        "ki\u200dll",  # zero-width joiner inside the word
        "ki\ufe0fll",  # variation selector
        "k\u0456ll",  # Cyrillic i
        "\uff4b\uff49\uff4c\uff4c",  # full-width letters
        "kíll",
        "k!ll",
    ],
)
def test_evasions_fold_to_the_word(written: str) -> None:
    assert matched(f"please {written} now") == ["piease", "kiii", "now"]


@pytest.mark.parametrize(("written", "word"), [("st@b", "stab"), ("n@zi", "nazi"), ("$ex", "sex")])
def test_symbols_for_letters_fold_to_the_word(written: str, word: str) -> None:
    assert match_tokens(f"a {written} here") == ["a", word, "here"]


def test_words_inside_other_words_stay_apart() -> None:
    assert "kill" not in match_tokens("show off her skills")


def test_hyphenated_and_numbered_names_join() -> None:
    assert match_tokens("an AR-15 rifle") == ["an", *match_tokens("ar15"), *match_tokens("rifle")]


def test_other_scripts_are_left_as_they_are() -> None:
    assert match_tokens("сделай фото") == ["сделаи", "фото"]
    assert match_tokens("让这张照片动起来") == ["让这张照片动起来"]


def test_a_spelled_out_article_stays_a_word() -> None:
    assert match_tokens("a g u n") == ["a", "gun"]
