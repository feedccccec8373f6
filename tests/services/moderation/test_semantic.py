"""The prompt's meaning and the people it names: the sentence encoder (all-MiniLM-L6-v2 in
numpy), how nearness to the policy's examples weighs a prompt, and named-entity recognition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alive.reasons import ReasonCode
from services.moderation.policy import DEFAULT_POLICY, load_policy
from services.moderation.prompt.classifier import PromptClassifier
from services.moderation.prompt.semantic import bundled_model_dir, encoder_for


@pytest.fixture(scope="module")
def classifier() -> PromptClassifier:
    return PromptClassifier(load_policy())


def test_the_encoder_puts_paraphrases_near_and_unrelated_sentences_far() -> None:
    encoder = encoder_for(bundled_model_dir())
    vectors = encoder.encode(
        [
            "a dog runs along the beach",
            "a puppy is running by the sea",
            "quarterly earnings fell short of forecasts",
        ]
    )
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    near, far = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert near > 0.5 > 0.2 > far
    # A batch and one at a time agree (padding is masked out).
    alone = encoder.encode(["a dog runs along the beach"])[0]
    assert np.allclose(alone, vectors[0], atol=1e-4)


def test_harm_no_term_names_goes_to_a_person(classifier: PromptClassifier) -> None:
    decision = classifier.classify("a mob beating a man who lies on the pavement")
    assert decision.decision == "review"
    assert decision.reason_codes == [ReasonCode.PROMPT_VIOLENCE]


def test_a_term_in_a_plainly_everyday_scene_goes_to_a_person_not_a_block(
    classifier: PromptClassifier,
) -> None:
    everyday = classifier.classify("naked branches of the old oak in the snow")
    assert everyday.decision == "review" and everyday.reason_codes == [ReasonCode.PROMPT_SEXUAL]
    meant = classifier.classify("a naked woman on the bed")
    assert meant.decision == "block"


@pytest.mark.parametrize("prompt", ["n4ked girl", "mach sie nackt", "ki-ll them all"])
def test_evasions_keep_their_terms_decision(classifier: PromptClassifier, prompt: str) -> None:
    assert classifier.classify(prompt).decision == "block"


def test_the_threshold_is_policy(tmp_path: Path) -> None:
    prompt = "a mob beating a man who lies on the pavement"
    strict = tmp_path / "policy.yaml"
    strict.write_text(DEFAULT_POLICY.read_text().replace("review_at: 0.5", "review_at: 0.95"))
    assert PromptClassifier(load_policy(strict)).classify(prompt).decision == "allow"


def test_examples_for_an_unknown_category_stop_the_policy(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(
        DEFAULT_POLICY.read_text().replace("      drugs: [snorting", "      drug: [snorting")
    )
    with pytest.raises(ValueError, match="semantic examples for categories that do not exist"):
        load_policy(bad)


@pytest.mark.parametrize(
    ("prompt", "decision", "codes"),
    [
        ("make Angela Merkel announce her resignation", "block", ["PROMPT_DECEPTION"]),
        ("Serena Williams waving at the crowd", "review", ["PROMPT_REAL_PERSON"]),
        ("my grandmother waving at the crowd", "allow", []),
    ],
)
def test_people_the_prompt_names_go_to_a_person_or_are_deception_when_made_to_speak(
    classifier: PromptClassifier, prompt: str, decision: str, codes: list[str]
) -> None:
    judged = classifier.classify(prompt)
    assert (judged.decision, [str(c) for c in judged.reason_codes]) == (decision, codes)
