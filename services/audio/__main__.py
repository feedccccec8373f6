"""Runs the audio service."""

from alive.service import serve
from alive.settings import ServiceSettings
from services.audio.stage import AudioStage

if __name__ == "__main__":
    serve("audio", ServiceSettings(), lambda settings, rt: (AudioStage(settings, rt.blobs), []))
