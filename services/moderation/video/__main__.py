"""Runs the video checkpoint."""

from alive.service import serve
from services.moderation.video.settings import VideoCheckpointSettings
from services.moderation.video.stage import VideoCheckpoint

if __name__ == "__main__":
    serve(VideoCheckpoint, VideoCheckpointSettings())
