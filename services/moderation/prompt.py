"""Moderation, prompt checkpoint.

Consumes Job from alive.photo-cleared; emits it unchanged to alive.prompt-cleared. Vetoes a
prompt that contains a term of a policy category (services/moderation/prompt_terms.json),
with that category's reason code, e.g. PROMPT_VIOLENCE; every matching category is
reported. Matching is on whole words after normalisation, so "skills" does not match "kill"
while "K1LL", "kíll" and "k i l l" do. Semantic classifiers come in their own issue.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from alive.blobs import BlobStore
from alive.service import serve
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job, JobState
from services.moderation.settings import ModerationSettings

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
    reason_code: str
    terms: tuple[tuple[str, ...], ...]  # each term as its normalised words


class TermList:
    def __init__(self, categories: list[Category]) -> None:
        self.categories = categories

    @classmethod
    def load(cls, path: Path) -> TermList:
        raw = json.loads(path.read_text())
        return cls(
            [
                Category(
                    name,
                    spec["reason_code"],
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


class PromptCheckpoint(Stage[Job, ModerationSettings]):
    name = "moderation-prompt"
    input_type = Job
    consumes = "photo_cleared"
    emits = "prompt_cleared"
    passed_state = JobState.PROMPT_CLEARED

    def __init__(self, settings: ModerationSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.terms = TermList.load(settings.prompt_terms_path)

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        hits = self.terms.matches(event.prompt)
        if hits:
            # The detail names categories only: vetoes are logged and the prompt never is.
            return Veto(
                tuple(c.reason_code for c in hits),
                "prompt matches policy: " + ", ".join(c.name for c in hits),
            )
        return event


if __name__ == "__main__":
    serve(
        "moderation-prompt",
        ModerationSettings(),
        lambda settings, rt: (PromptCheckpoint(settings, rt.blobs), []),
    )
