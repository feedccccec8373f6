"""The audio stage alone: a silent video comes out with a soundtrack as long as itself."""

from __future__ import annotations

import re
from pathlib import Path

from alive.blobs import LocalBlobStore
from alive.media import probe_mp4
from alive.v1.events_pb2 import GenerationInfo, Job, JobState, OutputSpec
from alive_tools.testing import StageHarness
from services.audio.settings import AudioSettings
from services.audio.stage import AudioStage
from tests.support import photo_bytes, write_clip


async def test_a_silent_video_gets_a_soundtrack_chosen_from_the_prompt(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    write_clip(tmp_path / "silent.mp4", audio_length=None)
    job = Job(
        job_id="a1",
        prompt="rain on the sea",
        photo=blobs.put_bytes("photos/a1.png", photo_bytes(fmt="PNG"), "image/png"),
        video=blobs.put_file("videos/a1/generated.mp4", tmp_path / "silent.mp4", "video/mp4"),
        output=OutputSpec(width=64, height=112, fps=12, duration_ms=1000),
        generation=GenerationInfo(frame_count=12),
    )
    harness = StageHarness(AudioStage(AudioSettings(), blobs))
    out = await harness.send(harness.upstream(job))
    assert out.statuses[0].state == JobState.SCORED
    (scored,) = out.jobs
    assert {"rain", "waves"} <= set(scored.soundscape_layers)
    assert re.search(r"/videos/a1/scored-[0-9a-f]{32}\.mp4$", scored.video.uri)
    info = probe_mp4(blobs.local_path(scored.video))
    assert info.audio_codec == "aac" and info.frame_count == 12
    assert abs((info.audio_duration_s or 0) - 1.0) < 0.05
