"""``make bench``: measurements on the embedded stack, side by side in one run.

1. Stage latency: jobs at the default output (576x1024, 24 fps, 4 s), one at a time; the
   median time of each stage, from the job's status history.
2. Throughput under sustained load: 12 jobs (the issue's measure on main) submitted at once;
   jobs per minute against (1), and the time to the last one ready.
3. The animator served: identical requests sent one at a time, then all at once (its two
   instances serve them side by side; it has no dynamic batcher, since it renders a batch's
   items one after another); the ratio of the two wall times.
   Then the generator with the video encoded next to the model against raw frames fetched
   and encoded in the generator (bytes in the answer, time and generator CPU per job).
4. Moderation per item, p50 and p95, each checkpoint's own code path in process: every
   prompt of the eval set, the sample photo, and a default-size video from (1); measured
   after the stack has stopped, so that its idle services do not share the cores.
5. The serving path (benchmarks/serving.py): the generator against a fixed-cost stand-in
   model, batched and unbatched; and the pipeline's throughput from (2) against the naive
   loop it replaces on the same 12 jobs (one process per core: photo, animator, encode), with
   the peak memory of the stack during (2) and of the loop's processes; and the same 12 jobs
   through the serving path alone (the generator stage and the animator in a Triton of its
   own) against the loop, with Triton's peak memory.
6. The whole pipeline around the stand-in (benchmarks/pipeline.py): end-to-end time minus
   the model's (its queue for a batch and the batch's execution); and the per-stage times
   of the tiny diffusion model's jobs.
7. Provenance per video (benchmarks/provenance.py): labelling remux, C2PA signing and the
   verification after it, for 1, 5 and 20 MB videos.
8. One Kafka hop on the embedded broker (benchmarks/kafka_hop.py) by the consumers'
   fetch_max_wait_ms, with an idle consumer's CPU.
9. The animator alone (benchmarks/animator.py): CPU per frame at the default size for a
   set of prompts, and contact sheets (PNG, a row of frames per prompt) under out/.

Figures go to stdout and to out/bench.json. The machine is shared and noisy: compare the
ratios, which are measured in the same run, rather than absolute times across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient

from alive.blobs import LocalBlobStore
from alive.stage import Stage
from alive.v1.events_pb2 import BlobRef, Job, OutputSpec
from alive_tools.embedded.stack import EmbeddedStack
from alive_tools.moderation_eval import DEFAULT_SET, read_items
from alive_tools.testing import StageHarness
from benchmarks.animator import animator_cpu, contact_sheets
from benchmarks.kafka_hop import hop_latency
from benchmarks.memory import PeakMemory, tree_rss_bytes
from benchmarks.pipeline import (
    diffusion_stage_times,
    end_to_end_ms,
    output_text,
    pipeline_overhead,
    stage_latencies,
    wait_ready,
)
from benchmarks.provenance import signing_cost
from benchmarks.serving import (
    DEFAULT_SIZE,
    batches_between,
    frames_or_video,
    generator_batching,
    model_stats,
    naive_loop,
    serving_path,
)
from services.moderation.photo.settings import PhotoCheckpointSettings
from services.moderation.photo.stage import PhotoCheckpoint
from services.moderation.prompt.settings import PromptCheckpointSettings
from services.moderation.prompt.stage import PromptCheckpoint
from services.moderation.video.settings import VideoCheckpointSettings
from services.moderation.video.stage import VideoCheckpoint

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "chelsea.jpg"


async def animator_concurrency(url: str, requests: int, frames: int) -> dict[str, object]:
    client = InferenceServerClient(
        url, channel_args=[("grpc.max_receive_message_length", 2**31 - 1)]
    )
    image = np.random.default_rng(0).integers(0, 255, (512, 288, 3), dtype=np.uint8)

    def inputs(seed: int) -> list[InferInput]:
        values = {
            "IMAGE": (image[None], "UINT8"),
            "PROMPT": (np.array([[b"clouds drifting over the sea"]], dtype=np.object_), "BYTES"),
            "SEED": (np.array([[seed]], dtype=np.int64), "INT64"),
            "NUM_FRAMES": (np.array([[frames]], dtype=np.int32), "INT32"),
            "FPS": (np.array([[24]], dtype=np.int32), "INT32"),
        }
        out = []
        for name, (value, dtype) in values.items():
            tensor = InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            out.append(tensor)
        return out

    # The stack's jobs ran on this model before (long ended, so counted): count from here.
    earlier = await model_stats(url, "alive_animator", inferences=0)
    await client.infer("alive_animator", inputs(0))  # warm up
    started = time.perf_counter()
    for seed in range(requests):
        await client.infer("alive_animator", inputs(seed))
    sequential = time.perf_counter() - started
    before = await model_stats(url, "alive_animator", earlier["inferences"] + 1 + requests)
    started = time.perf_counter()
    await asyncio.gather(*(client.infer("alive_animator", inputs(s)) for s in range(requests)))
    concurrent = time.perf_counter() - started
    await client.close()
    after = await model_stats(url, "alive_animator", before["inferences"] + requests)
    return {
        "requests": requests,
        "sequential_s": round(sequential, 3),
        "concurrent_s": round(concurrent, 3),
        "concurrent_speedup": round(sequential / concurrent, 2),
        "executions_by_batch_size": batches_between(before, after),
    }


async def moderation_latency(blob_root: Path, video: BlobRef, rounds: int) -> dict[str, object]:
    """Per-item time of each checkpoint (stage and event processor, as the service runs it)."""
    blobs = LocalBlobStore(blob_root)
    photo = blobs.put_bytes(f"bench/{uuid.uuid4()}.jpg", SAMPLE.read_bytes(), "image/jpeg")
    prompts = [i["prompt"] for i in read_items(DEFAULT_SET)]
    cases: dict[str, tuple[Stage[Any, Any], list[Job]]] = {
        "prompt": (
            PromptCheckpoint(PromptCheckpointSettings(), blobs),
            [Job(job_id=f"p-{i}", prompt=p) for i, p in enumerate(prompts)],
        ),
        "photo": (
            PhotoCheckpoint(PhotoCheckpointSettings(), blobs),
            [Job(job_id=f"f-{i}", photo=photo) for i in range(rounds)],
        ),
        "video_4s_576x1024": (
            VideoCheckpoint(VideoCheckpointSettings(), blobs),
            [Job(job_id=f"v-{i}", video=video, output=DEFAULT_SIZE) for i in range(rounds)],
        ),
    }
    results: dict[str, object] = {}
    for name, (stage, jobs) in cases.items():
        async with StageHarness(stage) as harness:
            warm_up = Job(
                job_id="warm-up", prompt="x", photo=photo, video=video, output=DEFAULT_SIZE
            )
            await harness.send(harness.upstream(warm_up))
            times = []
            for job in jobs:
                signed = harness.upstream(job)  # as the earlier stages pass it on
                started = time.perf_counter()
                out = await harness.send(signed)
                assert out.statuses, f"{name}: no decision"
                times.append((time.perf_counter() - started) * 1000)
        times.sort()
        results[name] = {
            "items": len(times),
            "p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3, help="jobs one at a time (1)")
    parser.add_argument("--load-jobs", type=int, default=12, help="jobs submitted at once (2)")
    parser.add_argument("--out", type=Path, default=Path("out/bench.json"))
    args = parser.parse_args()
    results: dict[str, object] = {}
    photo = SAMPLE.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        stack = EmbeddedStack(Path(tmp))
        with stack:
            results["stack_start_s"] = round(time.monotonic() - started, 2)
            with stack.client() as client:
                client.submit(photo, "warm up", output=OutputSpec(width=96, height=160))
                sequential = []
                t0 = time.monotonic()
                for i in range(args.jobs):
                    job = client.submit(photo, "", seed=i).job_id
                    sequential.append(wait_ready(client, job))
                one_at_a_time = time.monotonic() - t0
                # From creators enough for the load: a creator may have 8 jobs under way.
                creators = [stack.client(f"load-{k}") for k in range(args.load_jobs // 8 + 1)]
                t0 = time.monotonic()
                with PeakMemory(lambda: tree_rss_bytes(stack.pids())) as stack_memory:
                    submitted = []
                    for i in range(args.load_jobs):
                        creator = creators[i % len(creators)]
                        submitted.append((creator, creator.submit(photo, "", seed=100 + i).job_id))
                    together = [wait_ready(creator, job) for creator, job in submitted]
                all_at_once = time.monotonic() - t0
                for creator in creators:
                    creator.close()
            results["default_job"] = {
                "output": output_text(DEFAULT_SIZE),
                "median_stage_ms": stage_latencies(sequential),
                "median_end_to_end_ms": statistics.median(map(end_to_end_ms, sequential)),
            }
            results["throughput"] = {
                "jobs_one_at_a_time": args.jobs,
                "one_at_a_time_jobs_per_min": round(60 * args.jobs / one_at_a_time, 2),
                "jobs_submitted_together": args.load_jobs,
                "submitted_together_jobs_per_min": round(60 * args.load_jobs / all_at_once, 2),
                "median_end_to_end_ms_together": statistics.median(map(end_to_end_ms, together)),
                "stack_peak_memory_gib": stack_memory.peak_gib,
            }
            results["animator_concurrent_288x512x48"] = asyncio.run(
                animator_concurrency(stack.triton.grpc_url, requests=8, frames=48)
            )
            results["generator_frames_or_video"] = frames_or_video(stack.triton.grpc_url, photo)
            kept = Path(tmp) / "default-job.mp4"
            with stack.blob_store().local_copy(sequential[0].video) as video:
                shutil.copyfile(video, kept)
        moderation_store = LocalBlobStore(Path(tmp) / "moderation")
        signed = moderation_store.put_file("videos/bench/signed.mp4", kept, "video/mp4")
        results["moderation_per_item"] = asyncio.run(
            moderation_latency(moderation_store.root, signed, rounds=20)
        )
    results["generator_batching_standin"] = generator_batching(photo)
    results["pipeline_standin"] = pipeline_overhead(photo)
    results["pipeline_tiny_diffusion"] = diffusion_stage_times(photo)
    with PeakMemory(lambda: tree_rss_bytes([os.getpid()], include_roots=False)) as loop_memory:
        naive = naive_loop(photo, jobs=args.load_jobs)  # the same work as (2)
    serving = serving_path(photo, jobs=args.load_jobs)  # the same again, just after the loop
    pipeline_rate = results["throughput"]["submitted_together_jobs_per_min"]  # type: ignore[index]
    results["naive_loop_default_size"] = naive | {
        "naive_ratio": round(pipeline_rate / naive["jobs_per_min"], 2),
        "loop_peak_memory_gib": loop_memory.peak_gib,
        # The loop's work alone through the serving path (generator and Triton), beside it.
        "serving_path": serving,
        "serving_ratio": round(serving["jobs_per_min"] / naive["jobs_per_min"], 2),
    }
    results["provenance_per_video"] = signing_cost()
    results["kafka_hop"] = hop_latency()

    results["animator_576x1024_cpu"] = animator_cpu()
    results["contact_sheets"] = contact_sheets(args.out.parent)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print_summary(results)


# The serving path's figures and the goals for them (docs/performance.md).
GOALS: list[tuple[str, str, str]] = [
    ("generator_batching_standin", "batching_speedup", ">= 6"),
    ("generator_batching_standin", "generator_overhead_ratio_p50", "< 1.05"),
    ("generator_batching_standin", "generator_overhead_ratio_p99", ""),
    ("pipeline_standin", "overhead_s_p50", "< 2"),
    ("pipeline_standin", "overhead_s_p99", ""),
    ("pipeline_standin", "overhead_s_p50_queue_included", ""),
    ("generator_batching_standin", "model_busy_fraction", "> 0.95"),
    ("naive_loop_default_size", "naive_ratio", ">= 1"),
    ("naive_loop_default_size", "serving_ratio", ""),
    ("throughput", "stack_peak_memory_gib", ""),
    ("naive_loop_default_size", "loop_peak_memory_gib", ""),
]


def print_summary(results: dict[str, Any]) -> None:
    print(f"{'figure':34} {'value':>10}  goal")
    for section, name, goal in GOALS:
        print(f"{name:34} {results[section][name]:>10}  {goal}")


if __name__ == "__main__":
    main()
