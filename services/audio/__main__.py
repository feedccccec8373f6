"""Runs the audio service."""

from alive.service import serve
from services.audio.settings import AudioSettings
from services.audio.stage import AudioStage

if __name__ == "__main__":
    serve(AudioStage, AudioSettings())
