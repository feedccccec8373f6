"""One job's peak working set per stage, at the input bounds (alive/limits.py): the figures
the memory budgets in services/*/settings.py are set from (docs/scaling.md#memory).

Each stage runs in a fresh process: it loads its models, then takes one job as large as the
bounds allow (a 40-megapixel photo; the largest video, 1080x1920 x 300 frames with its
soundtrack). Its resident memory once the models are loaded is its base; the peak of it
sampled every 20 ms during the job, less the base, is the job's working set. Blobs are local
files (the encrypting store adds one copy of a blob's bytes while it decrypts it).

    .venv/bin/python -m benchmarks.stage_memory [stage ...]
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from alive.blobs import LocalBlobStore
from alive.limits import JobLimits
from alive.stage import Stage
from alive.v1.events_pb2 import GenerationInfo, Job, OutputSpec
from alive_tools.testing import StageHarness
from benchmarks.memory import PeakMemory, tree_rss_bytes

MIB = 1024 * 1024
LIMITS = JobLimits()


def rss_mib() -> float:
    return tree_rss_bytes([os.getpid()]) / MIB


def sampled() -> PeakMemory:
    return PeakMemory(lambda: tree_rss_bytes([os.getpid()]), interval_s=0.02)


def largest_photo_png() -> bytes:
    """A photo-like PNG at the pixel bound (4000 x 10000 at 40 MP): smooth colours with fine
    noise, as a camera makes (a flat image would compress to nothing)."""
    height = 10_000
    width = LIMITS.max_photo_pixels // height
    rng = np.random.default_rng(0)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    rows = []
    for channel, (a, b) in enumerate(((90, 70), (200, 120), (230, 50))):
        plane = a + (b - a) * y + rng.normal(0, 6, (height, width)).astype(np.float32)
        rows.append(np.clip(plane, 0, 255).astype(np.uint8))
        del plane
        _ = channel
    image = Image.fromarray(np.stack(rows, axis=2))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def largest_video(path: Path) -> None:
    """The largest output a job may ask for, as the audio stage leaves it (H.264 + AAC)."""
    from alive.media import encode_h264
    from services.audio.mux import mux_audio

    lim = LIMITS.output
    count = lim.max_frames
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (lim.max_height // 8, lim.max_width // 8, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    frames = np.empty((count, lim.max_height, lim.max_width, 3), np.uint8)
    for i in range(count):
        frames[i] = np.roll(big, i * 4, axis=1)
    silent = path.with_suffix(".silent.mp4")
    encode_h264(frames, lim.max_fps, silent)
    del frames
    seconds = count / lim.max_fps
    audio = (0.1 * rng.standard_normal((2, round(seconds * 48_000)))).astype(np.float32)
    mux_audio(silent, audio, 48_000, path)


def largest_spec() -> OutputSpec:
    lim = LIMITS.output
    return OutputSpec(
        width=lim.max_width, height=lim.max_height, fps=lim.max_fps, duration_ms=lim.max_duration_ms
    )


async def _one_job(stage: Stage[Any, Any], job: Callable[[LocalBlobStore], Job]) -> dict[str, Any]:
    async with StageHarness(stage) as harness:
        event = harness.upstream(job(stage.blobs))  # type: ignore[arg-type]
        base = rss_mib()
        with sampled() as during:
            out = await harness.send(event)
    outcome = "passed" if out.outputs else ("vetoed" if out.vetoes else "failed")
    return _figures(base, during, outcome)


def _figures(base: float, during: PeakMemory, outcome: str) -> dict[str, Any]:
    job = during.peak_bytes / MIB - base
    return {"base_mib": round(base), "job_mib": round(job), "outcome": outcome}


def measure(stage_name: str, inputs: Path) -> dict[str, Any]:
    blobs = LocalBlobStore(inputs / f"blobs-{stage_name}")
    photo_file, video_file = inputs / "photo.png", inputs / "video.mp4"

    def with_photo(store: LocalBlobStore) -> Job:
        ref = store.put_file("photos/p.png", photo_file, "image/png")
        return Job(job_id="m1", photo=ref, prompt="waves", output=largest_spec())

    def with_video(store: LocalBlobStore) -> Job:
        job = with_photo(store)
        job.video.CopyFrom(store.put_file("videos/v.mp4", video_file, "video/mp4"))
        job.generation.CopyFrom(GenerationInfo(frame_count=LIMITS.output.max_frames))
        return job

    stage: Stage[Any, Any]
    if stage_name == "moderation-photo":
        from services.moderation.photo.settings import PhotoCheckpointSettings
        from services.moderation.photo.stage import PhotoCheckpoint

        stage, job = PhotoCheckpoint(PhotoCheckpointSettings(), blobs), with_photo
    elif stage_name == "moderation-video":
        from services.moderation.video.settings import VideoCheckpointSettings
        from services.moderation.video.stage import VideoCheckpoint

        stage, job = VideoCheckpoint(VideoCheckpointSettings(), blobs), with_video
    elif stage_name == "audio":
        from services.audio.settings import AudioSettings
        from services.audio.stage import AudioStage

        stage, job = AudioStage(AudioSettings(), blobs), with_video
    elif stage_name == "provenance":
        # The largest MP4 the generator passes on (max_video_bytes), nearly incompressible
        # noise: what signing holds grows with the file, not with the frames.
        from benchmarks.provenance import video_of_size

        sized = inputs / "largest.mp4"
        video_of_size(sized, LIMITS.output.max_video_bytes // 1_000_000)
        return provenance_peak(inputs, sized)
    else:
        raise SystemExit(f"no measurement for {stage_name}")
    return asyncio.run(_one_job(stage, job))


def provenance_peak(inputs: Path, video: Path) -> dict[str, Any]:
    """The provenance stage's work on the largest video (label, sign, verify), as
    benchmarks/provenance.py runs it: with a development chain, without a timestamp
    authority."""
    from alive.provenance import verify_video
    from alive_tools.signing_chain import ensure_dev_chain
    from services.provenance.settings import ProvenanceSettings
    from services.provenance.signing import (
        GenerationFacts,
        VideoSigner,
        label_ai_generated,
        signer_from_settings,
    )

    lim = LIMITS.output
    chain = ensure_dev_chain(inputs / "certs")
    settings = ProvenanceSettings(cert_dir=inputs / "certs", trust_anchor_path=chain.root_cert)
    signer = VideoSigner(signer_from_settings(settings))
    facts = GenerationFacts(
        model_name="alive_animator",
        model_version="1",
        seed=1,
        frames=lim.max_frames,
        fps=lim.max_fps,
        duration_ms=lim.max_duration_ms,
        width=lim.max_width,
        height=lim.max_height,
        checkpoints_passed=("moderation-photo", "moderation-prompt"),
        checkpoints_after_signing=("moderation-video",),
        policy_versions={},
        created_at="2025-01-01T00:00:00+00:00",
    )
    photo = inputs / "small.png"
    Image.new("RGB", (64, 64), (90, 140, 200)).save(photo)
    base = rss_mib()
    labelled, signed = inputs / "labelled.mp4", inputs / "signed.mp4"
    with sampled() as during:
        label_ai_generated(video, labelled)
        signer.sign(labelled, photo, "image/png", facts, signed)
        verify_video(signed, chain.root_cert.read_bytes())
    return _figures(base, during, "signed")


STAGES = ("moderation-photo", "moderation-video", "audio", "provenance")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        print(json.dumps(measure(argv[1], Path(argv[2]))))
        return 0
    stages = argv or list(STAGES)
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp)
        (inputs / "photo.png").write_bytes(largest_photo_png())
        if set(stages) - {"moderation-photo"}:
            largest_video(inputs / "video.mp4")
        sizes = {
            "photo_png_mib": round((inputs / "photo.png").stat().st_size / MIB, 1),
            "video_mp4_mib": round((inputs / "video.mp4").stat().st_size / MIB, 1)
            if (inputs / "video.mp4").exists()
            else None,
        }
        print(json.dumps(sizes))
        for name in stages:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.stage_memory", "--child", name, tmp],
                capture_output=True,
                text=True,
                check=False,
            )
            line = done.stdout.strip().splitlines()[-1:] or [done.stderr[-2000:]]
            print(name, line[0], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
