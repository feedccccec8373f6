"""The video checkpoint alone: the last check before the creator sees the video."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alive.blobs import LocalBlobStore
from alive.reasons import ReasonCode
from alive.v1.events_pb2 import Job, JobState, OutputSpec
from alive_tools.testing import Emitted, StageHarness
from services.moderation.image_rules import ImageModels, sampled_frames
from services.moderation.policy import DEFAULT_POLICY, load_policy
from services.moderation.video.settings import VideoCheckpointSettings
from services.moderation.video.stage import VideoCheckpoint
from tests.support import write_clip

# write_clip's defaults: 64x112, 12 frames at 12 fps, 1 s, AAC as long as the video.
CLIP_SPEC = OutputSpec(width=64, height=112, fps=12, duration_ms=1000)


async def check(
    tmp_path: Path,
    spec: OutputSpec = CLIP_SPEC,
    audio_length: float | None = 1.0,
    **settings: object,
) -> Emitted:
    blobs = LocalBlobStore(tmp_path / "blobs")
    write_clip(tmp_path / "clip.mp4", audio_length=audio_length)
    video = blobs.put_file("videos/v1/signed.mp4", tmp_path / "clip.mp4", "video/mp4")
    async with StageHarness(VideoCheckpoint(VideoCheckpointSettings(**settings), blobs)) as h:
        return await h.send(h.upstream(Job(job_id="v1", video=video, output=spec)))


async def test_a_video_as_asked_passes_and_is_ready(tmp_path: Path) -> None:
    out = await check(tmp_path)
    assert out.statuses[0].state == JobState.READY
    scores = out.jobs[0].stages[-1].scores
    assert scores["frame_count"] == 12 and 0 <= scores["nsfw_max"] < 0.4


async def test_sampled_frames_are_judged_under_the_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEFAULT_POLICY.read_text().replace("block_at: 0.8", "block_at: 0.0"))
    out = await check(tmp_path, policy_path=policy)
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.VIDEO_SEXUAL]
    rules = load_policy().image
    assert sampled_frames(12, 12.0, rules) == [0, 6, 11]  # 2 a second, first and last
    assert sampled_frames(96, 24.0, rules) == [0, 12, 24, 36, 48, 60, 72, 84, 95]


@pytest.mark.parametrize(
    ("spec", "audio_length", "codes"),
    [
        (OutputSpec(width=96, height=112, fps=12, duration_ms=1000), 1.0, ["VIDEO_SIZE_MISMATCH"]),
        (
            OutputSpec(width=64, height=112, fps=12, duration_ms=2000),
            1.0,
            ["VIDEO_FRAME_COUNT_MISMATCH", "VIDEO_DURATION_MISMATCH"],
        ),
        (CLIP_SPEC, None, ["VIDEO_NO_AUDIO"]),
        (CLIP_SPEC, 0.5, ["AUDIO_DURATION_MISMATCH"]),
    ],
)
async def test_a_video_unlike_the_job_is_vetoed(
    tmp_path: Path, spec: OutputSpec, audio_length: float | None, codes: list[str]
) -> None:
    out = await check(tmp_path, spec, audio_length)
    assert list(out.vetoes[0].reason_codes) == codes
    assert out.statuses[0].state == JobState.VETOED


async def test_an_undecodable_video_is_vetoed(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    video = blobs.put_bytes("videos/v2/signed.mp4", b"\x00\x00\x00\x18ftypmp42 broken", "video/mp4")
    async with StageHarness(VideoCheckpoint(VideoCheckpointSettings(), blobs)) as harness:
        out = await harness.send(harness.upstream(Job(job_id="v2", video=video, output=CLIP_SPEC)))
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.VIDEO_UNDECODABLE]
    assert out.statuses[0].state == JobState.VETOED


async def test_harmful_text_on_every_frame_is_blocked(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    write_clip(tmp_path / "clip.mp4", width=288, height=512, text="KILL YOURSELF")
    video = blobs.put_file("videos/v3/signed.mp4", tmp_path / "clip.mp4", "video/mp4")
    spec = OutputSpec(width=288, height=512, fps=12, duration_ms=1000)
    async with StageHarness(VideoCheckpoint(VideoCheckpointSettings(), blobs)) as harness:
        out = await harness.send(harness.upstream(Job(job_id="v3", video=video, output=spec)))
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.VIDEO_TEXT]
    assert "self_harm" in out.vetoes[0].detail


async def test_a_possible_minor_on_the_frames_with_any_sexual_signal_is_blocked(
    tmp_path: Path,
) -> None:
    """The sexual_minor rule on sampled frames, with the policy's age line moved above the
    (adult) astronaut's apparent age and its sexual-signal line at zero."""
    photo = Path(__file__).parents[2] / "data" / "moderation" / "photos" / "astronaut.jpg"
    face = np.asarray(Image.open(photo).convert("RGB"))
    write_clip(tmp_path / "face.mp4", width=512, height=512, image=face)
    policy = tmp_path / "policy.yaml"
    text = DEFAULT_POLICY.read_text().replace("minor_age_below: 21", "minor_age_below: 60")
    policy.write_text(text.replace("minor_nsfw_at: 0.2", "minor_nsfw_at: 0.0"))
    blobs = LocalBlobStore(tmp_path / "blobs")
    video = blobs.put_file("videos/v4/signed.mp4", tmp_path / "face.mp4", "video/mp4")
    spec = OutputSpec(width=512, height=512, fps=12, duration_ms=1000)
    stage = VideoCheckpoint(VideoCheckpointSettings(policy_path=policy), blobs)
    async with StageHarness(stage) as harness:
        out = await harness.send(harness.upstream(Job(job_id="v4", video=video, output=spec)))
    assert list(out.vetoes[0].reason_codes) == [ReasonCode.VIDEO_MINOR_SAFETY]
    assert "apparent age" in out.vetoes[0].detail


async def test_a_soundtrack_without_speech_is_not_transcribed(tmp_path: Path) -> None:
    out = await check(tmp_path)  # a tone: the voice detector hears no speech
    assert out.jobs[0].stages[-1].scores["speech_words"] == 0


async def test_heard_words_are_judged_by_the_prompt_rules(tmp_path: Path) -> None:
    """With the policy set to transcribe every soundtrack, the recogniser runs for real on
    the clip's tone ("beep beep ..."): harmless words pass and are counted."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        DEFAULT_POLICY.read_text().replace("always_transcribe: false", "always_transcribe: true")
    )
    out = await check(tmp_path, policy_path=policy)
    assert out.statuses[0].state == JobState.READY
    assert out.jobs[0].stages[-1].scores["speech_words"] > 0


def test_speech_is_judged_like_a_prompt() -> None:
    """What the checkpoint does with a transcript (no recording of speech ships in a package
    here, so the recogniser's side of this is covered by the test above)."""
    models = ImageModels(load_policy(), None)
    action, finding = models.judge_words(
        "you should kill yourself", ReasonCode.VIDEO_SPEECH, "speech in the video"
    )
    assert action == "block" and finding.code == ReasonCode.VIDEO_SPEECH
    assert "self_harm" in finding.detail and "kill" not in finding.detail
    assert models.judge_words("what a lovely day", ReasonCode.VIDEO_SPEECH, "speech")[0] is None
