"""The whole pipeline on the embedded stack with another model than the animator: the
fixed-cost stand-in (what the pipeline adds around a model) and the tiny diffusion model
(its per-stage times). Helpers to wait for jobs and read their times from their history.

- ``pipeline_overhead``: jobs submitted at a steady rate (open loop, one every
  ``1 / rate_per_s`` seconds) that the CPU stages of this 2-core machine can carry: each
  job's end-to-end time (submitted to READY) minus its time at the model (Triton's mean
  execution of a batch, and its mean wait in Triton's queue for one), i.e. everything that
  is not the model: Kafka hops, the three checkpoints, audio, provenance, the generator's
  own work. At this rate the stand-in (2.1 s a batch) is busy most of the time, so jobs
  wait for a batch; the figures with that wait counted as overhead, as the first runs
  counted it, are reported beside. (At the stand-in's own
  capacity, 8 jobs per 2.2 s, the checkpoints' CPU, not the model, would set the pace and
  queues would grow without end: that is a throughput figure, measured in (2).)
- ``diffusion_stage_times``: jobs at a small size through ``i2v_diffusion`` with a tiny
  random pipeline (alive_tools/tiny_diffusion.py), 2 denoising steps.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tritonclient.grpc.aio import InferenceServerClient

from alive.v1.api_pb2 import JobView
from alive.v1.events_pb2 import JobState, OutputSpec
from alive_tools.client import AliveClient
from alive_tools.embedded.stack import MODEL_REPOSITORY, EmbeddedStack
from alive_tools.tiny_diffusion import build_tiny_ltx

STANDIN = Path(__file__).resolve().parent / "standin"
SMALL = OutputSpec(width=96, height=160, fps=12, duration_ms=1000)


def wait_ready(client: AliveClient, job_id: str, timeout_s: float = 600) -> JobView:
    """The job's view once it is READY. It waits on the job's status stream: polling Get every
    50 ms cost the stack CPU that its jobs share, and told the end up to 50 ms late."""
    for _ in client.watch(job_id, stop_at_ready=True, timeout_s=timeout_s):
        pass  # the stream ends at READY or at an end
    view = client.get(job_id)
    if view.state != JobState.READY:
        raise RuntimeError(f"job {job_id} is {JobState.Name(view.state)}, not READY")
    return view


def output_text(spec: OutputSpec) -> str:
    return f"{spec.width}x{spec.height}, {spec.fps} fps, {spec.duration_ms} ms"


def stage_latencies(views: list[JobView]) -> dict[str, float]:
    """Each stage's median time (ms) over the jobs, from their status histories."""
    per_stage: dict[str, list[int]] = {}
    for view in views:
        for event in view.history:
            if event.stage_started_at_ms:
                per_stage.setdefault(event.stage, []).append(
                    event.at_ms - event.stage_started_at_ms
                )
    return {stage: statistics.median(ms) for stage, ms in per_stage.items()}


def end_to_end_ms(view: JobView) -> int:
    return view.history[-1].at_ms - view.history[0].stage_started_at_ms


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[int(fraction * (len(ordered) - 1))]


async def _model_times_s(url: str, model: str) -> tuple[float, float]:
    """Triton's own means for ``model``: the execution of a batch, and a request's wait in
    its queue (where the dynamic batcher gathers a batch)."""
    client = InferenceServerClient(url)
    stats = (await client.get_inference_statistics(model, as_json=True))["model_stats"][0]
    await client.close()
    executions = int(stats.get("execution_count", 0))
    compute_ns = sum(
        int(b[part]["ns"])
        for b in stats.get("batch_stats", [])
        for part in ("compute_input", "compute_infer", "compute_output")
    )
    queue = stats.get("inference_stats", {}).get("queue", {})
    queue_s = int(queue.get("ns", 0)) / 1e9 / max(int(queue.get("count", 0)), 1)
    return compute_ns / 1e9 / max(executions, 1), queue_s


def pipeline_overhead(photo: bytes, jobs: int = 16, rate_per_s: float = 0.5) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        repository = Path(tmp) / "repository"
        shutil.copytree(STANDIN, repository / "standin", ignore=shutil.ignore_patterns("__*"))
        stack = EmbeddedStack(
            Path(tmp) / "stack",
            extra_env={"ALIVE_GENERATOR__MODEL_NAME": "standin"},
            model_repository=repository,
            models=("standin",),
        )
        with stack, stack.client() as client:
            wait_ready(client, client.submit(photo, "warm up", output=SMALL).job_id)
            started, ids = time.monotonic(), []
            for i in range(jobs):
                time.sleep(max(0.0, started + i / rate_per_s - time.monotonic()))
                ids.append(client.submit(photo, "", output=SMALL, seed=i).job_id)
            views = [wait_ready(client, job) for job in ids]
            model_s, queue_s = asyncio.run(_model_times_s(stack.triton.grpc_url, "standin"))
    end_to_end_s = [end_to_end_ms(v) / 1000 for v in views]
    # A job's time at the model is its wait in Triton's queue for a batch and the batch's
    # execution; everything else is what the pipeline adds.
    overhead = [s - model_s - queue_s for s in end_to_end_s]
    beside_execution = [s - model_s for s in end_to_end_s]  # the first runs' definition
    return {
        "jobs": len(views),
        "jobs_per_s": rate_per_s,
        "output": output_text(SMALL),
        "model_s_per_execution": round(model_s, 3),
        "model_queue_s_per_request": round(queue_s, 3),
        "overhead_s_p50": round(statistics.median(overhead), 3),
        "overhead_s_p99": round(percentile(overhead, 0.99), 3),
        "overhead_s_p50_queue_included": round(statistics.median(beside_execution), 3),
        "overhead_s_p99_queue_included": round(percentile(beside_execution, 0.99), 3),
        "median_stage_ms": stage_latencies(views),
    }


def diffusion_stage_times(photo: bytes, jobs: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        weights = build_tiny_ltx(Path(tmp) / "tiny-ltx")
        repository = Path(tmp) / "repository"
        model = repository / "i2v_diffusion"
        shutil.copytree(
            MODEL_REPOSITORY / "i2v_diffusion", model, ignore=shutil.ignore_patterns("__*")
        )
        config = model / "config.pbtxt"
        unset = 'key: "weights_path"\n    value: { string_value: "" }'
        config.write_text(
            config.read_text().replace(unset, unset.replace('""', json.dumps(str(weights))))
        )
        stack = EmbeddedStack(
            Path(tmp) / "stack",
            extra_env={
                "ALIVE_GENERATOR__MODEL_NAME": "i2v_diffusion",
                "ALIVE_GENERATOR__DIFFUSION_STEPS": "2",
            },
            model_repository=repository,
            models=("i2v_diffusion",),
        )
        with stack, stack.client() as client:
            views = [
                wait_ready(client, client.submit(photo, "", output=SMALL, seed=i).job_id)
                for i in range(jobs)
            ]
    return {
        "jobs": jobs,
        "output": output_text(SMALL),
        "median_stage_ms": stage_latencies(views),
        "median_end_to_end_ms": statistics.median(map(end_to_end_ms, views)),
    }
