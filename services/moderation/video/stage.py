"""Moderation, video checkpoint: the last check before the creator sees the video.

Consumes Job from alive.signed; emits it to alive.ready (READY: shown to the creator).
Vetoes a video that does not decode (VIDEO_UNDECODABLE), whose size, frame count or length
is not what the job asked for (VIDEO_SIZE_MISMATCH, VIDEO_FRAME_COUNT_MISMATCH,
VIDEO_DURATION_MISMATCH), that has no soundtrack (VIDEO_NO_AUDIO) or whose soundtrack's
length differs from the video's (AUDIO_DURATION_MISMATCH); then scores sexual content on
sampled frames (the first, the last and the policy's number per second) with the open_nsfw
model: the highest score decides, block (VIDEO_SEXUAL) or review as for photos; and reads
text written on frames spread over the video (OCR), judged by the prompt rules
(VIDEO_TEXT); finds faces on the sampled frames, and a possible minor with any sexual signal
is blocked (VIDEO_MINOR_SAFETY); and transcribes speech in the soundtrack when the voice
detector hears some (services/moderation/speech.py), judged by the prompt rules
(VIDEO_SPEECH).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from alive.blobs import BlobError, BlobStore, local_file
from alive.jobs import frame_count
from alive.media import MediaError, MediaInfo, probe_mp4_keeping, read_frames
from alive.pipeline import MODERATION_VIDEO
from alive.reasons import Finding, ReasonCode
from alive.stage import StageContext, Veto
from alive.v1.events_pb2 import Job
from services.moderation.image_rules import ImageCheckpoint, Verdicts, sampled_frames
from services.moderation.speech import SpeechReader
from services.moderation.video.settings import VideoCheckpointSettings


class VideoCheckpoint(ImageCheckpoint[VideoCheckpointSettings]):
    spec = MODERATION_VIDEO

    def __init__(self, settings: VideoCheckpointSettings, blobs: BlobStore) -> None:
        super().__init__(settings, blobs)
        self.speech = SpeechReader(settings.speech_model_path, self.policy.speech)

    async def start(self) -> None:
        await super().start()
        await asyncio.to_thread(self.speech.load)

    def is_ready(self) -> bool:
        return super().is_ready() and self.speech.ready

    def versions(self) -> Mapping[str, str]:
        return {**super().versions(), "speech": "whisper-tiny.en+silero-vad"}

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        try:
            async with local_file(self.blobs, event.video) as path:
                return await self._judge(path, event, ctx)
        except BlobError as exc:
            return Veto.of(ReasonCode.VIDEO_UNDECODABLE, str(exc))

    async def _judge(self, path: Path, event: Job, ctx: StageContext) -> Job | Veto:
        rules = self.policy.image
        # The frames to judge in a video as asked, kept from the decode that checks it.
        expected = sampled_frames(frame_count(event.output), event.output.fps, rules)
        try:
            info, kept = await asyncio.to_thread(probe_mp4_keeping, path, expected)
        except MediaError as exc:
            return Veto.of(ReasonCode.VIDEO_UNDECODABLE, str(exc))
        problems = self.problems(info, event)
        ctx.scores["frame_count"] = info.frame_count
        ctx.scores["duration_s"] = round(info.duration_s, 3)
        if problems:
            return Veto(tuple(problems))
        indices = sampled_frames(info.frame_count, info.fps, rules)
        ctx.cancel_token.check()
        if indices == expected:
            frames = np.stack([kept[i] for i in indices])
        else:  # a frame rate other than asked, within the duration's tolerance
            frames = await asyncio.to_thread(read_frames, path, indices)
        del kept
        ctx.cancel_token.check()
        spread = np.linspace(0, len(frames) - 1, rules.video_detail_frames).round().astype(int)
        detail = [frames[i] for i in sorted(set(spread))]  # for text and faces
        # The models side by side: onnxruntime, OpenCV and CTranslate2 release the GIL.
        scores, faces, text, heard = await asyncio.gather(
            asyncio.to_thread(self.models.nsfw.scores, list(frames)),
            asyncio.to_thread(self.models.faces.in_all, detail),
            asyncio.to_thread(self.models.judge_text, detail, ReasonCode.VIDEO_TEXT),
            asyncio.to_thread(self.speech.transcript, path, ctx.cancel_token),
        )
        score = max(scores)
        ctx.scores["nsfw_max"] = round(score, 4)
        verdicts = Verdicts()
        verdicts.add(
            rules.nsfw_decision(score),
            Finding(ReasonCode.VIDEO_SEXUAL, f"highest frame nsfw score {score:.2f}"),
        )
        verdicts.add(
            *self.models.judge_faces(faces, score, ReasonCode.VIDEO_MINOR_SAFETY, ctx.scores)
        )
        verdicts.add(*text)
        ctx.scores["speech_words"] = len(heard.split()) if heard else 0
        if heard:
            verdicts.add(
                *self.models.judge_words(heard, ReasonCode.VIDEO_SPEECH, "speech in the video")
            )
        return verdicts.outcome(ctx, {"nsfw_max": score}) or event

    def problems(self, info: MediaInfo, job: Job) -> list[Finding]:
        spec = job.output
        wanted_frames = frame_count(spec)
        wanted_s = wanted_frames / spec.fps
        found: list[Finding] = []
        if (info.width, info.height) != (spec.width, spec.height):
            found.append(
                Finding(
                    ReasonCode.VIDEO_SIZE_MISMATCH,
                    f"{info.width}x{info.height}, asked {spec.width}x{spec.height}",
                )
            )
        if info.frame_count != wanted_frames:
            found.append(
                Finding(
                    ReasonCode.VIDEO_FRAME_COUNT_MISMATCH,
                    f"{info.frame_count} frames, asked {wanted_frames}",
                )
            )
        if abs(info.duration_s - wanted_s) > 1 / spec.fps:
            found.append(
                Finding(
                    ReasonCode.VIDEO_DURATION_MISMATCH,
                    f"{info.duration_s:.3f} s, asked {wanted_s:.3f} s",
                )
            )
        if info.audio_duration_s is None:
            found.append(Finding(ReasonCode.VIDEO_NO_AUDIO, "no audio stream"))
        elif (
            abs(info.audio_duration_s - info.duration_s) > self.settings.audio_duration_tolerance_s
        ):
            found.append(
                Finding(
                    ReasonCode.AUDIO_DURATION_MISMATCH,
                    f"audio {info.audio_duration_s:.3f} s, video {info.duration_s:.3f} s",
                )
            )
        return found
