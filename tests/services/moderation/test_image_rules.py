"""ImageModels' judgments of words read or heard (the photo and video checkpoints share it)."""

from __future__ import annotations

from typing import Any

from alive.reasons import ReasonCode
from services.moderation.image_rules import ImageModels
from services.moderation.policy import DEFAULT_POLICY, load_policy


def test_a_text_seen_again_is_judged_once_and_alike() -> None:
    models = ImageModels(load_policy(DEFAULT_POLICY), None)
    classify, calls = models.text_rules.classify, []

    def counted(text: str, **options: Any) -> Any:
        calls.append(text)
        return classify(text, **options)

    models.text_rules.classify = counted  # type: ignore[method-assign]
    first = models.judge_words("KILL YOURSELF", ReasonCode.VIDEO_TEXT, "text in the image")
    again = models.judge_words("KILL YOURSELF", ReasonCode.VIDEO_TEXT, "text in the image")
    label = models.judge_words("AI-generated", ReasonCode.VIDEO_TEXT, "text in the image")
    assert first == again and first[0] == "block"
    assert label[0] is None  # allowed
    assert calls == ["KILL YOURSELF", "AI-generated"]
    # The same words in another check keep that check's code and source.
    heard = models.judge_words("KILL YOURSELF", ReasonCode.VIDEO_SPEECH, "speech in the video")
    assert heard[1].code == ReasonCode.VIDEO_SPEECH and heard[1].detail.startswith("speech")
    assert len(calls) == 2
