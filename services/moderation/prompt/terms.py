"""The prompt checkpoint's term lists: one per policy category, matched on normalised words.

Matching is on whole words after normalisation, so "skills" does not match "kill" while
"K1LL", "kíll" and "k i l l" do. Each category names its reason code, which must be one of
``alive.reasons.ReasonCode``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from alive.reasons import ReasonCode

DEFAULT_TERMS = Path(__file__).with_name("prompt_terms.json")

# Digits and symbols people swap for letters to slip past word lists.
_LOOKALIKES = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)


def words_of(text: str) -> list[str]:
    """Normalised words: no accents, lower case, look-alikes undone, spaced letters joined."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    tokens = re.findall(r"[a-z0-9@$]+", plain)
    words: list[str] = []
    run: list[str] = []  # consecutive one-letter tokens: "k i l l" -> "kill"
    for token in [t.translate(_LOOKALIKES) for t in tokens] + [""]:
        if len(token) == 1:
            run.append(token)
            continue
        if len(run) > 2 and run[0] in ("a", "i"):  # "a g u n": the English word, then "gun"
            words.append(run.pop(0))
        if run:
            words.append("".join(run))
            run = []
        if token:
            words.append(token)
    return words


@dataclass(frozen=True)
class Category:
    name: str
    reason_code: ReasonCode
    terms: tuple[tuple[str, ...], ...]  # each term as its normalised words


class TermList:
    def __init__(self, categories: list[Category]) -> None:
        self.categories = categories

    @classmethod
    def load(cls, path: Path) -> TermList:
        """Reads a term file; a category whose reason code Alive does not know is an error."""
        raw = json.loads(path.read_text())
        return cls(
            [
                Category(
                    name,
                    ReasonCode(spec["reason_code"]),
                    tuple(tuple(words_of(term)) for term in spec["terms"]),
                )
                for name, spec in raw.items()
                if not name.startswith("_")
            ]
        )

    def matches(self, prompt: str) -> list[Category]:
        words = words_of(prompt)
        joined = " " + " ".join(words) + " "
        return [
            category
            for category in self.categories
            if any(f" {' '.join(term)} " in joined for term in category.terms)
        ]
