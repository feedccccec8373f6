"""Moderation, video checkpoint: the last check before the creator sees the video.

Consumes Job from alive.signed; emits it to alive.ready (READY: shown to the creator).
Vetoes a video that does not decode (VIDEO_UNDECODABLE), whose size, frame count or length
is not what the job asked for (VIDEO_SIZE_MISMATCH, VIDEO_FRAME_COUNT_MISMATCH,
VIDEO_DURATION_MISMATCH), that has no soundtrack (VIDEO_NO_AUDIO) or whose soundtrack's
length differs from the video's (AUDIO_DURATION_MISMATCH). Frame classifiers come in their
own issue.
"""

from __future__ import annotations

import asyncio

from alive.blobs import BlobError
from alive.jobs import frame_count
from alive.media import MediaError, MediaInfo, probe_mp4
from alive.service import serve
from alive.stage import Stage, StageContext, Veto
from alive.v1.events_pb2 import Job, JobState
from services.moderation.settings import ModerationSettings


class VideoCheckpoint(Stage[Job, ModerationSettings]):
    name = "moderation-video"
    input_type = Job
    consumes = "signed"
    emits = "ready"
    passed_state = JobState.READY

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        try:
            path = self.blobs.local_path(event.video)
            info = await asyncio.to_thread(probe_mp4, path)
        except (BlobError, MediaError) as exc:
            return Veto(("VIDEO_UNDECODABLE",), str(exc))
        problems = self.problems(info, event)
        ctx.scores["frame_count"] = info.frame_count
        ctx.scores["duration_s"] = round(info.duration_s, 3)
        if problems:
            return Veto(
                tuple(code for code, _ in problems), "; ".join(detail for _, detail in problems)
            )
        return event

    def problems(self, info: MediaInfo, job: Job) -> list[tuple[str, str]]:
        spec = job.output
        wanted_frames = frame_count(spec)
        wanted_s = wanted_frames / spec.fps
        found: list[tuple[str, str]] = []
        if (info.width, info.height) != (spec.width, spec.height):
            found.append(
                (
                    "VIDEO_SIZE_MISMATCH",
                    f"{info.width}x{info.height}, asked {spec.width}x{spec.height}",
                )
            )
        if info.frame_count != wanted_frames:
            found.append(
                ("VIDEO_FRAME_COUNT_MISMATCH", f"{info.frame_count} frames, asked {wanted_frames}")
            )
        if abs(info.duration_s - wanted_s) > 1 / spec.fps:
            found.append(
                ("VIDEO_DURATION_MISMATCH", f"{info.duration_s:.3f} s, asked {wanted_s:.3f} s")
            )
        if info.audio_duration_s is None:
            found.append(("VIDEO_NO_AUDIO", "no audio stream"))
        elif (
            abs(info.audio_duration_s - info.duration_s) > self.settings.audio_duration_tolerance_s
        ):
            found.append(
                (
                    "AUDIO_DURATION_MISMATCH",
                    f"audio {info.audio_duration_s:.3f} s, video {info.duration_s:.3f} s",
                )
            )
        return found


if __name__ == "__main__":
    serve(
        "moderation-video",
        ModerationSettings(),
        lambda settings, rt: (VideoCheckpoint(settings, rt.blobs), []),
    )
