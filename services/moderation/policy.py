"""The moderation policy (policy.yaml beside this file), loaded and checked.

The policy is data a trust-and-safety team edits: terms, benign phrases, patterns, actions
and the languages the lists cover. ``load_policy`` validates every field and fails with a
``PolicyError`` that names the file and line of the first mistake, so a bad edit stops a
checkpoint at start instead of changing decisions silently. Every decision carries the
policy's ``version``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from alive.reasons import ReasonCode

DEFAULT_POLICY = Path(__file__).with_name("policy.yaml")

Action = Literal["block", "review"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TermCategory(_Strict):
    # The category of the moderation vocabulary it counts under, where not its own key.
    label: str | None = None
    reason_code: ReasonCode
    action: Action
    terms: tuple[str, ...] = Field(min_length=1)
    allow: tuple[str, ...] = ()


class PatternCategory(_Strict):
    label: str | None = None
    reason_code: ReasonCode
    action: Action
    expressions: tuple[str, ...] = Field(min_length=1)

    @field_validator("expressions")
    @classmethod
    def _compiles(cls, expressions: tuple[str, ...]) -> tuple[str, ...]:
        for expression in expressions:
            try:
                re.compile(expression)
            except re.error as exc:
                raise ValueError(f"{expression!r} is not a regular expression: {exc}") from exc
        return expressions


class MinorWithSexual(_Strict):
    label: str
    reason_code: ReasonCode
    minor_terms: tuple[str, ...] = Field(min_length=1)


class FaceWithAction(_Strict):
    label: str
    reason_code: ReasonCode
    action: Action
    terms: tuple[str, ...] = Field(min_length=1)


class NamedPerson(_Strict):
    label: str
    reason_code: ReasonCode
    action: Action
    speech_terms: tuple[str, ...] = Field(min_length=1)
    speech_reason_code: ReasonCode
    speech_action: Action


class PromptRules(_Strict):
    minor_with_sexual: MinorWithSexual
    face_with_action: FaceWithAction
    named_person: NamedPerson


class SemanticRules(_Strict):
    review_at: float = Field(ge=0, le=1)
    margin: float = Field(ge=0, le=1)
    harm_below: float = Field(ge=0, le=1)
    benign_at: float = Field(ge=0, le=1)
    benign_margin: float = Field(ge=0, le=1)
    examples: dict[str, tuple[str, ...]] = Field(min_length=1)
    benign: tuple[str, ...] = Field(min_length=1)


class PromptPolicy(_Strict):
    languages: tuple[str, ...] = Field(min_length=1)
    language_min_words: int = Field(ge=1)
    language_min_confidence: float = Field(ge=0, le=1)
    language_reason_code: ReasonCode
    categories: dict[str, TermCategory] = Field(min_length=1)
    patterns: dict[str, PatternCategory] = Field(default_factory=dict)
    semantic: SemanticRules
    rules: PromptRules

    @model_validator(mode="after")
    def _examples_name_categories(self) -> PromptPolicy:
        unknown = sorted(set(self.semantic.examples) - set(self.categories))
        if unknown:
            raise ValueError(f"semantic examples for categories that do not exist: {unknown}")
        return self


class NsfwThresholds(_Strict):
    block_at: float = Field(ge=0, le=1)
    review_at: float = Field(ge=0, le=1)


class FacePolicy(_Strict):
    min_face_fraction: float = Field(gt=0, le=1)
    minor_age_below: float = Field(gt=0)
    minor_nsfw_at: float = Field(ge=0, le=1)


class ImagePolicy(_Strict):
    blank_max_stddev: float = Field(ge=0)
    nsfw: NsfwThresholds
    faces: FacePolicy
    video_frames_per_second: float = Field(gt=0)
    ocr_max_side: int = Field(ge=32)
    ocr_min_score: float = Field(ge=0, le=1)
    video_detail_frames: int = Field(ge=1)

    def nsfw_decision(self, score: float) -> Action | None:
        """block, review, or None (allow) for a sexual-content score."""
        if score >= self.nsfw.block_at:
            return "block"
        return "review" if score >= self.nsfw.review_at else None


class SpeechPolicy(_Strict):
    always_transcribe: bool
    min_speech_ms: int = Field(ge=0)


class Policy(_Strict):
    version: str = Field(min_length=1)
    image: ImagePolicy
    speech: SpeechPolicy
    prompt: PromptPolicy

    def labels(self) -> dict[ReasonCode, str]:
        """Each prompt reason code's category in the moderation vocabulary."""
        rules = self.prompt
        named: list[tuple[str, TermCategory | PatternCategory]] = [
            *rules.categories.items(),
            *rules.patterns.items(),
        ]
        labels = {spec.reason_code: spec.label or key for key, spec in named}
        labels[rules.rules.minor_with_sexual.reason_code] = rules.rules.minor_with_sexual.label
        labels[rules.rules.face_with_action.reason_code] = rules.rules.face_with_action.label
        labels[rules.language_reason_code] = "language"
        return labels


class PolicyError(ValueError):
    """The policy file is not valid; the message names the file and line."""


def load_policy(path: Path = DEFAULT_POLICY) -> Policy:
    text = path.read_text()
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not YAML: {exc}") from exc
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        line = _line_of(root, error["loc"])
        where = ".".join(str(part) for part in error["loc"])
        message = error["msg"]
        if error["type"] == "enum":  # pydantic would list every reason code there is
            message = f"{error['input']!r} is not a reason code (alive/reasons.py)"
        raise PolicyError(f"{path}:{line}: {where}: {message}") from exc


def _line_of(node: Any, loc: tuple[int | str, ...]) -> int:
    """The 1-based line of the node at ``loc``, or of the nearest parent that exists."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            match = node.value[part] if part < len(node.value) else None
        else:
            match = None
        if match is None:
            break
        node, line = match, match.start_mark.line + 1
    return line
