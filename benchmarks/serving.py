"""The serving path around a model, measured with a fixed-cost stand-in (benchmarks/standin:
2 s a batch plus 20 ms an item, max batch 8, small outputs), and the pipeline against the
naive loop it replaces.

- ``generator_batching``: the generator stage, through the same event processor the service
  runs, with 8 jobs in flight (its default), against the stand-in with dynamic batching
  and against the same stand-in with every request executed alone.
- ``frames_or_video``: one default-size job at a time through the generator stage against
  the real animator, with the video encoded next to the model (the default) and with raw
  frames fetched and encoded in the generator (``raw_frames``, as before): bytes in the
  answer, time per job and the generator process's CPU per job.
- ``serving_path``: the loop's work through the serving path alone: default-size jobs
  through the generator stage (8 in flight) and the real animator in a Triton server of its
  own, which encodes next to the model; no checkpoints, no soundtrack, no signing, no broker.
- ``naive_loop``: what a user might write instead, one process per core: load the photo,
  call the animator, encode; no Kafka, no Triton.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tritonclient.grpc.aio import InferenceServerClient

from alive.blobs import LocalBlobStore
from alive.jobs import DEFAULT_PROMPT, frame_count
from alive.limits import OutputLimits
from alive.v1.events_pb2 import Job, JobState, OutputSpec
from alive_tools.embedded.stack import MODEL_REPOSITORY
from alive_tools.embedded.triton import TritonServer
from alive_tools.testing import StageHarness
from benchmarks.memory import PeakMemory, tree_rss_bytes
from benchmarks.pipeline import SMALL, STANDIN
from services.generator.settings import GeneratorSettings
from services.generator.stage import GeneratorStage
from services.ingest.validation import resolve_output

ANIMATOR = Path(__file__).resolve().parents[1] / "models" / "alive_animator" / "1"
IN_FLIGHT = GeneratorSettings().max_in_flight
# What a job gets when it asks for no size: ingest's own filling in of the defaults.
DEFAULT_SIZE = resolve_output(OutputSpec(), OutputLimits())
STATS_WAIT_S = 10  # how long Triton may take to count a batch it has answered
LOOP_TIMEOUT_S = 600  # a loop process that failed leaves the others waiting at most this long


def _repository(folder: Path) -> Path:
    """The stand-in twice: batched as shipped, and unbatched (no dynamic batcher)."""
    shutil.copytree(STANDIN, folder / "standin", ignore=shutil.ignore_patterns("__pycache__"))
    unbatched = folder / "standin_unbatched"
    shutil.copytree(STANDIN, unbatched, ignore=shutil.ignore_patterns("__pycache__"))
    config = (unbatched / "config.pbtxt").read_text().replace('"standin"', '"standin_unbatched"')
    start = config.index("dynamic_batching")
    end = config.index("}", start) + 1
    (unbatched / "config.pbtxt").write_text(config[:start] + config[end:])
    return folder


async def _run(
    url: str, model: str, jobs: int, photo: bytes, folder: Path, output: OutputSpec = SMALL
) -> dict[str, Any]:
    blobs = LocalBlobStore(folder / model)
    stage = GeneratorStage(GeneratorSettings(triton_url=url, model_name=model), blobs)
    limit = asyncio.Semaphore(IN_FLIGHT)
    per_job: list[float] = []
    async with StageHarness(stage) as harness:

        def arriving(i: int) -> Job:
            """A job as it reaches the generator: its photo already stored upstream."""
            stored = blobs.put_bytes(f"photos/{model}-{i}.jpg", photo, "image/jpeg")
            job = Job(
                job_id=f"{model}-{i}", prompt=DEFAULT_PROMPT, photo=stored, output=output, seed=i
            )
            return harness.upstream(job)

        async def one(job: Job) -> None:
            async with limit:
                started = time.perf_counter()
                out = await harness.send(job)
                per_job.append(time.perf_counter() - started)
            assert out.statuses and out.statuses[0].state == JobState.GENERATED, out.dead_letters

        await one(arriving(10_000))  # warm up
        per_job.clear()
        # Stored before the clock starts (ingest stores them, not the generator): storing 48
        # photos on the event loop delayed the first batch and counted as the model idle.
        arrivals = [arriving(i) for i in range(jobs)]
        before = await model_stats(url, model, inferences=1)
        started = time.perf_counter()
        await asyncio.gather(*(one(job) for job in arrivals))
        wall = time.perf_counter() - started
        after = await model_stats(url, model, inferences=1 + jobs)
    compute_s = after["compute_s"] - before["compute_s"]
    per_execution_s = compute_s / (after["executions"] - before["executions"])
    ratios = sorted(t / per_execution_s for t in per_job)
    return {
        "jobs": jobs,
        "wall_s": round(wall, 2),
        "jobs_per_min": round(60 * jobs / wall, 2),
        "executions_by_batch_size": batches_between(before, after),
        "model_s_per_execution": round(per_execution_s, 3),
        # The stage's time per job over the model's time for a batch (the mean execution):
        # what the serving path adds to the model, queueing for a batch included.
        "generator_overhead_ratio_p50": round(statistics.median(ratios), 3),
        "generator_overhead_ratio_p99": round(ratios[int(0.99 * (len(ratios) - 1))], 3),
        "model_busy_fraction": round(compute_s / wall, 3),
    }


async def model_stats(url: str, model: str, inferences: int) -> dict[str, Any]:
    """Triton's counters for the model: executions, batches by size, compute seconds, once
    they count ``inferences`` requests. The server counts an execution after sending its
    responses, so counters read as the last job ends can lack its batch (the warm-up's, or
    the last one's), and that batch's compute would be missed or added to the wrong side."""
    client = InferenceServerClient(url)
    deadline = time.monotonic() + STATS_WAIT_S
    try:
        while True:
            answer = await client.get_inference_statistics(model, as_json=True)
            stats = answer["model_stats"][0]
            if int(stats.get("inference_count", 0)) >= inferences:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{model}: Triton counted fewer than {inferences} inferences")
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    batch_stats = stats.get("batch_stats", [])
    compute_ns = sum(
        int(b[part]["ns"])
        for b in batch_stats
        for part in ("compute_input", "compute_infer", "compute_output")
    )
    return {
        "inferences": int(stats.get("inference_count", 0)),
        "executions": int(stats.get("execution_count", 0)),
        "batches": {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in batch_stats},
        "compute_s": compute_ns / 1e9,
    }


def batches_between(before: dict[str, Any], after: dict[str, Any]) -> dict[int, int]:
    """Executions by batch size between two reads of ``model_stats``."""
    return {
        size: count - before["batches"].get(size, 0)
        for size, count in after["batches"].items()
        if count > before["batches"].get(size, 0)
    }


def generator_batching(photo: bytes, jobs: int = 48) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        repository = _repository(folder / "repository")
        models = ["standin", "standin_unbatched"]
        with TritonServer(repository, folder / "triton", models=models) as server:
            batched = asyncio.run(_run(server.grpc_url, "standin", jobs, photo, folder))
            alone = asyncio.run(
                _run(server.grpc_url, "standin_unbatched", jobs // 4, photo, folder)
            )
    return {
        "batched": batched,
        "unbatched": alone,
        "batching_speedup": round(batched["jobs_per_min"] / alone["jobs_per_min"], 2),
        "generator_overhead_ratio_p50": batched["generator_overhead_ratio_p50"],
        "generator_overhead_ratio_p99": batched["generator_overhead_ratio_p99"],
        "model_busy_fraction": batched["model_busy_fraction"],
    }


def _naive_worker(
    photo: bytes, count: int, first_seed: int, out: str, ready: Any, spans: Any
) -> None:
    """One process of the naive loop: photo -> frames -> MP4, ``count`` times. Its imports
    and first animation (the models' loading) come before the clock, as the serving path's
    start and warm-up job do; it reports when its jobs began and ended."""
    sys.path.insert(0, str(ANIMATOR))
    import io

    from animator_render import animate  # the same animation code the model runs
    from PIL import Image

    from alive.media import encode_h264
    from services.generator.framing import reduce_for_camera

    def job(seed: int, spec: OutputSpec) -> None:
        image = reduce_for_camera(Image.open(io.BytesIO(photo)), spec.width, spec.height)
        frames = frame_count(spec)
        video = animate(image, DEFAULT_PROMPT, seed, frames, spec.fps, spec.width, spec.height)
        encode_h264(video, spec.fps, Path(out) / f"{seed}.mp4")

    job(-1 - first_seed, SMALL)  # warm up
    ready.wait(timeout=LOOP_TIMEOUT_S)  # every process starts together
    started = time.monotonic()
    for seed in range(first_seed, first_seed + count):
        job(seed, DEFAULT_SIZE)
    spans.put((started, time.monotonic(), count))


async def _frames_or_video(url: str, photo: bytes, folder: Path, rounds: int) -> dict[str, Any]:
    blobs = LocalBlobStore(folder / "frames-or-video")
    stages = {
        mode: GeneratorStage(
            GeneratorSettings(triton_url=url, raw_frames=mode == "raw_frames"), blobs
        )
        for mode in ("video", "raw_frames")
    }
    times: dict[str, list[float]] = {mode: [] for mode in stages}
    cpu: dict[str, list[float]] = {mode: [] for mode in stages}
    answer_bytes: dict[str, int] = {}
    async with StageHarness(stages["video"]) as video, StageHarness(stages["raw_frames"]) as raw:
        harnesses = {"video": video, "raw_frames": raw}
        for i in range(rounds + 1):  # the first round warms both up
            for mode, harness in harnesses.items():  # side by side, alternating
                stored = blobs.put_bytes(f"photos/{mode}-{i}.jpg", photo, "image/jpeg")
                job = Job(
                    job_id=f"{mode}-{i}", prompt="waves", photo=stored, output=DEFAULT_SIZE, seed=i
                )
                started, cpu_started = time.perf_counter(), time.process_time()
                out = await harness.send(harness.upstream(job))
                if i:
                    times[mode].append(time.perf_counter() - started)
                    cpu[mode].append(time.process_time() - cpu_started)
                generated = out.jobs[0]
                frames = generated.generation.frame_count
                answer_bytes[mode] = (
                    frames * DEFAULT_SIZE.width * DEFAULT_SIZE.height * 3
                    if mode == "raw_frames"
                    else generated.video.size_bytes
                )
    return {
        mode: {
            "answer_mb": round(answer_bytes[mode] / 1e6, 2),
            "job_s_median": round(statistics.median(times[mode]), 3),
            "generator_cpu_s_per_job": round(statistics.median(cpu[mode]), 3),
        }
        for mode in stages
    }


def frames_or_video(url: str, photo: bytes, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_frames_or_video(url, photo, Path(tmp), rounds))


def serving_path(photo: bytes, jobs: int) -> dict[str, Any]:
    """The naive loop's work (the same photo, prompt and size) through the generator stage
    and the real animator in a Triton server of its own: what replaces the loop's own work.
    Peak memory is Triton's (server and model instances); the generator stage runs in this
    process, beside the rest of the benchmark."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with TritonServer(MODEL_REPOSITORY, folder / "triton") as server:
            assert server.pid is not None
            triton = [server.pid]
            with PeakMemory(lambda: tree_rss_bytes(triton)) as memory:
                served = asyncio.run(
                    _run(server.grpc_url, "alive_animator", jobs, photo, folder, DEFAULT_SIZE)
                )
    return {name: served[name] for name in ("jobs", "wall_s", "jobs_per_min")} | {
        "triton_peak_memory_gib": memory.peak_gib
    }


def naive_loop(photo: bytes, jobs: int) -> dict[str, Any]:
    """Default-size jobs (576x1024, 96 frames) by one process per core, from when all of
    them are warm to when the last is done."""
    processes = os.cpu_count() or 1
    per_process = max(1, jobs // processes)
    context = multiprocessing.get_context("spawn")
    ready, spans = context.Barrier(processes), context.Queue()
    with tempfile.TemporaryDirectory() as out:
        workers = [
            context.Process(
                target=_naive_worker,
                args=(photo, per_process, i * per_process, out, ready, spans),
            )
            for i in range(processes)
        ]
        for worker in workers:
            worker.start()
        done = [spans.get(timeout=LOOP_TIMEOUT_S) for _ in workers]  # Empty: one failed
        for worker in workers:
            worker.join()
    wall = max(end for _, end, _ in done) - min(start for start, _, _ in done)
    count = sum(n for _, _, n in done)
    return {"processes": processes, "jobs": count, "jobs_per_min": round(60 * count / wall, 2)}
