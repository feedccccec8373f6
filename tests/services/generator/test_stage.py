"""The generator stage alone: with the real Triton and model repository (a ``stack`` test),
and, without a server, how it treats Triton's answers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from tritonclient.utils import InferenceServerException

from alive.blobs import LocalBlobStore
from alive.dependencies import TRITON_MODEL, DependencyMonitor
from alive.media import encode_h264_bytes, probe_mp4, read_frames
from alive.reasons import ReasonCode
from alive.stage import PermanentError, TransientError
from alive.v1.events_pb2 import Job, JobState, OutputSpec
from alive_tools.embedded.ports import free_port
from alive_tools.embedded.triton import TritonServer
from alive_tools.testing import StageHarness
from alive_tools.tiny_diffusion import build_tiny_ltx
from services.generator.settings import GeneratorSettings
from services.generator.stage import (
    GeneratorStage,
    checked_frames,
    checked_video,
    progress_output,
    streamed_error,
    the_video,
    triton_error,
)
from tests.support import SMALL_FRAMES, SMALL_OUTPUT, photo_bytes

REPOSITORY = Path(__file__).resolve().parents[3] / "models"


def prompt_cleared(blobs: LocalBlobStore, spec: OutputSpec = SMALL_OUTPUT) -> Job:
    photo = blobs.put_bytes("photos/g1.png", photo_bytes(fmt="PNG"), "image/png")
    return Job(job_id="g1", prompt="clouds over the sea", photo=photo, output=spec, seed=7)


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    with TritonServer(REPOSITORY, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.mark.parametrize("raw_frames", [False, True])
async def test_the_model_animates_the_photo_into_a_silent_video(
    triton: TritonServer, tmp_path: Path, raw_frames: bool
) -> None:
    """The model encodes next to itself (or, for debugging, sends its raw frames)."""
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(triton_url=triton.grpc_url, raw_frames=raw_frames)
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(prompt_cleared(blobs)))
    assert out.statuses[0].state == JobState.GENERATED
    (job,) = out.jobs
    assert job.generation.model_name == "alive_animator"
    assert job.generation.frame_count == SMALL_FRAMES
    info = probe_mp4(blobs.local_path(job.video))
    assert (info.width, info.height, info.frame_count) == (96, 160, SMALL_FRAMES)
    assert info.audio_codec is None
    # The visible AI label, drawn as the frames were encoded (by the model, or here): white
    # text, where the photo (blue sky, green ground) has no white at all.
    frame = read_frames(blobs.local_path(job.video), [0])[0].astype(int)
    white = frame.min(axis=2) > 200
    assert white[:40, :48].any() and not white[40:].any()


async def test_triton_unreachable_is_retried_then_fails_the_job(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(
        triton_url=f"127.0.0.1:{free_port()}", max_attempts=3, infer_timeout_s=5
    )
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(prompt_cleared(blobs)))
    assert len(harness.retry_delays) == 2
    assert out.statuses[0].state == JobState.FAILED
    assert [d.reason_code for d in out.dead_letters] == [ReasonCode.RETRIES_EXHAUSTED]


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        ("StatusCode.UNAVAILABLE", True),
        ("StatusCode.RESOURCE_EXHAUSTED", True),
        (None, True),
        ("StatusCode.INVALID_ARGUMENT", False),
    ],
)
def test_triton_statuses_are_transient_or_a_rejected_input(
    status: str | None, transient: bool
) -> None:
    error = triton_error(InferenceServerException("no", status=status))
    if transient:
        assert isinstance(error, TransientError)
    else:
        assert isinstance(error, PermanentError)
        assert error.reason_code == ReasonCode.MODEL_REJECTED_INPUT


def test_a_model_being_reloaded_is_transient_and_a_model_never_known_is_not() -> None:
    reloading = "Request for unknown model: 'alive_animator' has no available versions"
    unknown = "Request for unknown model: 'alive_animtor' is not found"
    status = "StatusCode.NOT_FOUND"
    assert isinstance(triton_error(InferenceServerException(reloading, status)), TransientError)
    assert isinstance(triton_error(InferenceServerException(unknown, status)), PermanentError)


@pytest.mark.parametrize(
    ("message", "transient"),
    [
        ("Request for unknown model: 'i2v_diffusion' is not found", True),
        ("generation failed: CUDA out of memory", True),
        ("NUM_FRAMES must be 1..257, got 0", False),
    ],
)
def test_errors_on_the_stream_are_told_apart_by_their_words(message: str, transient: bool) -> None:
    """A decoupled model's errors carry no status code: a model Triton cannot run now or a
    failed generation is retried; a refused request fails the job."""
    error = streamed_error(InferenceServerException(message))
    assert isinstance(error, TransientError if transient else PermanentError)


def test_a_decoupled_model_must_declare_its_progress_output() -> None:
    int32 = {"name": "PROGRESS", "data_type": "TYPE_INT32"}
    video = {"name": "VIDEO", "data_type": "TYPE_STRING"}
    assert progress_output("m", {"output": [video, int32]}) == "PROGRESS"
    with pytest.raises(PermanentError, match="progress output"):
        progress_output("m", {"output": [video]})


@pytest.mark.parametrize(
    "frames", [None, np.zeros((1, 3, 8, 8, 3), np.uint8), np.zeros((1, 4, 8, 6, 3), np.uint8)]
)
def test_output_of_another_shape_is_a_bad_output(frames: np.ndarray | None) -> None:
    with pytest.raises(PermanentError) as error:
        checked_frames(frames, 4, (8, 8, 3))
    assert error.value.reason_code == ReasonCode.MODEL_BAD_OUTPUT


@pytest.mark.parametrize(
    ("video", "why"),
    [
        (b"not an mp4", "cannot be read"),
        (encode_h264_bytes(np.zeros((3, 8, 8, 3), np.uint8), 8), "3 frames of 8x8, asked 4"),
        (encode_h264_bytes(np.zeros((4, 8, 6, 3), np.uint8), 8), "4 frames of 6x8, asked 4"),
    ],
)
def test_a_video_unlike_the_one_asked_for_is_a_bad_output(video: bytes, why: str) -> None:
    with pytest.raises(PermanentError) as error:
        checked_video(video, 4, (8, 8, 3))
    assert error.value.reason_code == ReasonCode.MODEL_BAD_OUTPUT and why in error.value.detail


def test_a_video_as_asked_for_passes() -> None:
    checked_video(encode_h264_bytes(np.zeros((4, 8, 8, 3), np.uint8), 8), 4, (8, 8, 3))


def test_output_of_the_asked_shape_is_the_video() -> None:
    frames = np.arange(4 * 8 * 8 * 3, dtype=np.uint8).reshape(1, 4, 8, 8, 3)
    assert np.array_equal(checked_frames(frames, 4, (8, 8, 3)), frames[0])


def test_an_mp4_over_the_bound_the_later_stages_budget_for_is_refused() -> None:
    video = encode_h264_bytes(np.zeros((4, 8, 8, 3), np.uint8), 8)
    answer = np.array([[video]], dtype=np.object_)
    assert the_video(answer, len(video)) == video
    with pytest.raises(PermanentError) as error:
        the_video(answer, len(video) - 1)
    assert error.value.reason_code == ReasonCode.OUTPUT_TOO_LARGE


async def test_raw_frames_over_their_bound_are_refused_before_anything_is_asked(
    tmp_path: Path,
) -> None:
    """Raw frames come in one message: a job whose frames would exceed the bound fails with
    the reason, without a request (Triton is not even running here)."""
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(triton_url="127.0.0.1:1", raw_frames=True, raw_frames_max_mib=1)
    big = OutputSpec(width=512, height=512, fps=8, duration_ms=1000)  # 8 frames: 6 MiB
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(prompt_cleared(blobs, big)))
    (failed,) = out.statuses
    assert failed.state == JobState.FAILED
    assert list(failed.reason_codes) == [ReasonCode.OUTPUT_TOO_LARGE]
    assert "RAW_FRAMES_MAX_MIB" in failed.detail


@pytest.fixture(scope="module")
def diffusion_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Triton serving i2v_diffusion from a copy of the repository whose config points at a
    tiny pipeline folder: the production loading path, with toy weights."""
    repository = tmp_path_factory.mktemp("repository")
    weights = build_tiny_ltx(tmp_path_factory.mktemp("weights") / "tiny-ltx")
    model = repository / "i2v_diffusion"
    shutil.copytree(
        REPOSITORY / "i2v_diffusion", model, ignore=shutil.ignore_patterns("__pycache__")
    )
    config = model / "config.pbtxt"
    unset = 'key: "weights_path"\n    value: { string_value: "" }'
    assert unset in config.read_text()
    config.write_text(
        config.read_text().replace(unset, unset.replace('""', json.dumps(str(weights))))
    )
    workdir = tmp_path_factory.mktemp("triton")
    with TritonServer(repository, workdir, models=["i2v_diffusion"]) as server:
        yield server


async def test_the_diffusion_model_serves_a_job_through_triton(
    diffusion_triton: TritonServer, tmp_path: Path
) -> None:
    """The decoupled model streams a report per denoising step before its video: each
    reaches the job's watchers as progress (not a transition), then the job is GENERATED."""
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(
        triton_url=diffusion_triton.grpc_url,
        model_name="i2v_diffusion",
        diffusion_steps=3,
        progress_interval_s=0.0,
    )
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        out = await harness.send(harness.upstream(prompt_cleared(blobs)))
    assert [s.state for s in out.statuses] == [JobState.GENERATED], out.dead_letters
    reports = [(p.stage, p.state, p.progress.done, p.progress.total) for p in out.progress]
    unspecified = JobState.JOB_STATE_UNSPECIFIED
    assert reports == [("generator", unspecified, step, 3) for step in (1, 2, 3)]
    assert {p.progress.unit for p in out.progress} == {"steps"}
    (job,) = out.jobs
    assert (job.generation.model_name, job.generation.model_version) == (
        "i2v_diffusion",
        "ltx-video",
    )
    info = probe_mp4(blobs.local_path(job.video))
    assert (info.width, info.height, info.frame_count) == (96, 160, SMALL_FRAMES)


async def test_a_diffusion_job_cancelled_between_steps_stops_its_stream(
    diffusion_triton: TritonServer, tmp_path: Path
) -> None:
    """Cancelled after its first denoising step: the generator cancels the stream (Triton
    marks the request cancelled, the model stops at its next step) and the job ends with
    nothing stored or sent; the server then serves the next job."""
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(
        triton_url=diffusion_triton.grpc_url,
        model_name="i2v_diffusion",
        diffusion_steps=200,
        progress_interval_s=0.0,
        cancel_check_s=0.05,
    )
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        job = harness.upstream(prompt_cleared(blobs))

        async def cancel_after_first_step() -> None:
            # The harness keeps what the stage emits in lists: look until a report is there.
            while not harness.emitted.progress:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            harness.ledger.mark_cancelled(job.job_id)

        canceller = asyncio.create_task(cancel_after_first_step())
        out = await harness.send(job)
        await canceller
        assert not (out.jobs or out.statuses or out.dead_letters)
        assert 1 <= len(out.progress) < 200
        settings.diffusion_steps = 2
        second = Job(job_id="g2", prompt="waves", photo=job.photo, output=job.output, seed=8)
        after = await harness.send(harness.upstream(second))
    assert [s.state for s in after.statuses] == [JobState.GENERATED], after.dead_letters


async def test_a_job_cancelled_during_generation_is_stopped_and_sends_nothing(
    triton: TritonServer, tmp_path: Path
) -> None:
    """A default-size job (seconds of rendering) whose creator cancels it: the generator
    cancels its inference and the job ends with nothing stored or sent."""
    blobs = LocalBlobStore(tmp_path)
    settings = GeneratorSettings(triton_url=triton.grpc_url, cancel_check_s=0.1)
    default = OutputSpec(width=576, height=1024, fps=24, duration_ms=4000)
    async with StageHarness(GeneratorStage(settings, blobs)) as harness:
        job = harness.upstream(prompt_cleared(blobs, default))

        async def cancel_soon() -> None:
            await asyncio.sleep(0.3)
            harness.ledger.mark_cancelled(job.job_id)

        canceller = asyncio.create_task(cancel_soon())
        out = await harness.send(job)
        await canceller
    assert not (out.jobs or out.statuses or out.dead_letters)
    assert harness.metrics.events_out.labels("generator", "cancelled")._value.get() == 1
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("videos/**/*.mp4")))


async def test_a_dead_model_process_is_found_reported_and_reloaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blobs = LocalBlobStore(tmp_path / "blobs")
    with TritonServer(REPOSITORY, tmp_path / "triton") as server:
        settings = GeneratorSettings(triton_url=server.grpc_url, max_attempts=1)
        stage = GeneratorStage(settings, blobs)
        monitor = DependencyMonitor("generator", CollectorRegistry(), timeout_s=10)
        async with StageHarness(stage) as harness:
            monitor.add(TRITON_MODEL, stage.probes()[TRITON_MODEL])
            assert await monitor.check(TRITON_MODEL)
            killed = server.model_pids()
            assert killed
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
            # Triton still calls the model ready; the first request learns otherwise.
            first = prompt_cleared(blobs)
            out = await harness.send(harness.upstream(first))
            assert out.statuses[0].state == JobState.FAILED
            caplog.set_level(logging.INFO)
            assert not await monitor.check(TRITON_MODEL)
            assert "is not healthy" in monitor.down()[TRITON_MODEL]
            deadline = asyncio.get_running_loop().time() + 60
            while not await monitor.check(TRITON_MODEL):
                assert asyncio.get_running_loop().time() < deadline, monitor.down()
                await asyncio.sleep(0.5)
            assert not set(server.model_pids()) & set(killed)
            second = Job()
            second.CopyFrom(first)
            second.job_id = "g2"
            out = await harness.send(harness.upstream(second))
            assert out.statuses[0].state == JobState.GENERATED
        assert "reloaded the model" in [r.getMessage() for r in caplog.records]
