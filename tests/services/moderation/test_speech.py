"""The voice detector in front of the recogniser, on Alive's own soundtracks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from alive.media import encode_h264
from services.audio.mux import mux_audio
from services.audio.soundscape import choose_layers, render
from services.moderation.policy import DEFAULT_POLICY, load_policy
from services.moderation.speech import SpeechReader

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "chelsea.jpg"
RATE = 48_000


def soundscape_video(folder: Path, prompt: str, seed: int) -> Path:
    """A silent clip with the soundscape the audio stage makes for ``prompt`` and ``seed``."""
    silent, scored = folder / "silent.mp4", folder / "scored.mp4"
    encode_h264(np.zeros((48, 64, 64, 3), np.uint8), 12, silent)
    scene = np.asarray(Image.open(SAMPLE).convert("RGB").resize((64, 64)))
    mux_audio(
        silent, render(choose_layers(prompt, scene), 4.0, sample_rate=RATE, seed=seed), RATE, scored
    )
    return scored


def test_a_soundscape_fading_in_is_not_heard_as_speech(tmp_path: Path) -> None:
    """With no shortest speech (faster-whisper's default) the detector hears about 100 ms of
    speech as this soundscape fades in, and the recogniser runs on noise; with the policy's
    (Silero's own default) it hears none."""
    video = soundscape_video(tmp_path, "make this photo come alive", seed=0)
    policy = load_policy(DEFAULT_POLICY).speech
    assert policy.min_speech_ms == 250 and not policy.always_transcribe
    reader = SpeechReader(None, policy)
    reader.load()
    assert reader.transcript(video) is None
    eager = SpeechReader(None, policy.model_copy(update={"min_speech_ms": 0}))
    eager.load()
    assert eager.transcript(video) is not None
