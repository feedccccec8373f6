"""Facts about a job that several stages compute the same way."""

from __future__ import annotations

from alive.v1.events_pb2 import OutputSpec

# The moderation checkpoints a job must pass before it is READY, by stage name.
CHECKPOINTS = ("moderation-photo", "moderation-prompt", "moderation-video")


def frame_count(spec: OutputSpec) -> int:
    """Frames a video of this spec has: duration x fps, rounded."""
    return max(1, round(spec.duration_ms * spec.fps / 1000))


def video_key(job_id: str, step: str) -> str:
    """Blob key of a job's video after a step (generated, scored, signed)."""
    return f"videos/{job_id}/{step}.mp4"
