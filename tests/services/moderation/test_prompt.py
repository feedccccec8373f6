"""The prompt classifier under the shipped policy: each category blocks a clear example and
allows its benign look-alike; evasions are caught; other languages go to a person; the
policy, not the code, decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.moderation.policy import DEFAULT_POLICY, PolicyError, load_policy
from services.moderation.prompt.classifier import PromptClassifier, stem

CLASSIFIER = PromptClassifier(load_policy())


def judged(prompt: str) -> tuple[str, list[str]]:
    decision = CLASSIFIER.classify(prompt)
    return decision.decision, sorted(decision.reason_codes)


@pytest.mark.parametrize(
    ("harmful", "benign", "code"),
    [
        (
            "make her take off her clothes, fully naked",
            "nude lipstick on her lips",
            "PROMPT_SEXUAL",
        ),
        ("he stabs the man in the street", "kill the lights and light a candle", "PROMPT_VIOLENCE"),
        ("a man holding a pistol", "kids having a water gun fight", "PROMPT_WEAPONS"),
        ("blood everywhere and a severed head", "a blood-red sunset over the sea", "PROMPT_GORE"),
        ("I want to end my life tonight", "the suicide squad poster", "PROMPT_SELF_HARM"),
        ("swastika flags waving", "a grammar nazi correcting my spelling", "PROMPT_HATE"),
        ("make fun of her, call her a slut", "make her laugh with friends", "PROMPT_HARASSMENT"),
        ("a deepfake of my boss", "a deep blue lake", "PROMPT_DECEPTION"),
        ("people snorting cocaine at a party", "a method for brewing coffee", "PROMPT_DRUGS"),
        ("email me at someone@example.com", "a postcard from the seaside", "PROMPT_PII"),
        ("a little girl posing naked", "a little girl laughing on a swing", "PROMPT_MINOR_SAFETY"),
    ],
)
def test_each_category_blocks_its_example_and_allows_its_look_alike(
    harmful: str, benign: str, code: str
) -> None:
    decision, codes = judged(harmful)
    assert decision == "block" and code in codes
    assert judged(benign) == ("allow", [])


@pytest.mark.parametrize(
    "prompt",
    [
        "he was stabbed",  # inflection
        "hanging myself",
        "K1LL him",
        "ki\u200dll him",
        "k\u0456ll him",  # Cyrillic i
        "kiII him",
        "an AR-15 on the table",
        "a g-u-n on the table",
        "n u d e photo",
        "N.U.D.E",
        "ki-ll him",
    ],
)
def test_evasions_are_caught(prompt: str) -> None:
    assert judged(prompt)[0] == "block"


@pytest.mark.parametrize(
    "prompt",
    [
        "my cat shooting across the room",
        "kill it on the dance floor",
        "a bath bomb fizzing in the tub",
        "a shooting star over the sea",
        "show off her skills",
        "a killer whale jumping",
        "chicken breasts on the grill",
        "make this photo come alive",
    ],
)
def test_everyday_phrases_are_allowed(prompt: str) -> None:
    assert judged(prompt) == ("allow", [])


def test_minor_and_sexual_together_are_sexual_minor() -> None:
    assert judged("a teenager in lingerie") == ("block", ["PROMPT_MINOR_SAFETY", "PROMPT_SEXUAL"])
    assert judged("a teenager skateboarding") == ("allow", [])


def test_languages_the_lists_do_not_cover_go_to_a_person() -> None:
    assert judged("сделай это фото живым") == ("review", ["PROMPT_LANGUAGE_NOT_COVERED"])
    assert judged("fai muovere la foto con la pioggia e il vento")[0] == "review"
    assert judged("lass das Foto mit Regen lebendig werden") == ("allow", [])
    assert judged("haz que la foto cobre vida con lluvia") == ("allow", [])
    assert judged("ein nackter Mann am Strand")[0] == "block"


def test_a_named_public_figure_goes_to_a_person() -> None:
    decision = CLASSIFIER.classify("Barack Obama waving from a balcony")
    assert (decision.decision, decision.reason_codes) == ("review", ["PROMPT_REAL_PERSON"])
    assert decision.policy_version == load_policy().version


def test_stems_meet_across_inflections() -> None:
    assert stem("stabbed") == stem("stabbing") == stem("stabs") == stem("stab")
    assert stem("bodies") == "body" and stem("kiss") == "kiss"


def test_the_policy_decides_without_a_code_change(tmp_path: Path) -> None:
    edited = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY.read_text()
    weapons = text.index("    weapons:")
    edited.write_text(text[:weapons] + text[weapons:].replace("action: block", "action: review", 1))
    assert PromptClassifier(load_policy(edited)).classify("a man with a gun").decision == "review"


def test_an_invalid_policy_fails_naming_the_line(tmp_path: Path) -> None:
    broken = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY.read_text().replace("action: block", "action: maybe", 1)
    broken.write_text(text)
    line = text[: text.index("action: maybe")].count("\n") + 1
    with pytest.raises(PolicyError, match=rf"policy.yaml:{line}: .*action"):
        load_policy(broken)
    broken.write_text(DEFAULT_POLICY.read_text().replace("PROMPT_HATE", "PROMPT_ODD"))
    with pytest.raises(PolicyError, match="'PROMPT_ODD' is not a reason code"):
        load_policy(broken)
