"""Runs the photo checkpoint."""

from alive.service import serve
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint

if __name__ == "__main__":
    serve(PhotoCheckpoint, PhotoCheckpointSettings())
