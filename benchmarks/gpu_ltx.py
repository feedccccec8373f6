"""GPU sizing for i2v_diffusion: the real LTX-Video architecture at production size, with
random weights (nothing is downloaded), timed at batch 1, 2 and 4.

    python -m benchmarks.gpu_ltx [--height 512 --width 768 --frames 97 --steps 30]

Prints, per batch size, GPU-seconds per video and peak GPU memory, and writes
out/gpu_ltx.json. Random weights cost the same arithmetic as trained ones, so the times
hold for the real checkpoint (Lightricks/LTX-Video, 2B); the videos are noise. Needs a CUDA
GPU with about 40 GB (the T5-XXL text encoder alone is about 9.5 GB in bf16).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    from PIL import Image
    from transformers import T5Config, T5EncoderModel

    from alive_tools.tiny_diffusion import small_t5_tokenizer

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--frames", type=int, default=97)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--out", type=Path, default=Path("out/gpu_ltx.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU: this script measures GPU time")
    dtype, device = torch.bfloat16, "cuda"
    # The production configurations: the classes' defaults are LTX-Video's (2B transformer,
    # its video VAE); the text encoder is T5 v1.1 XXL's shape.
    transformer = LTXVideoTransformer3DModel().to(device, dtype)
    vae = AutoencoderKLLTXVideo().to(device, dtype)
    text_encoder = (
        T5EncoderModel(
            T5Config(
                d_model=4096,
                d_kv=64,
                d_ff=10240,
                num_layers=24,
                num_heads=64,
                feed_forward_proj="gated-gelu",
                vocab_size=32128,
            )
        )
        .to(device, dtype)
        .eval()
    )
    tokenizer = small_t5_tokenizer("waves clouds over the sea".split())
    pipe = LTXImageToVideoPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=tokenizer,
    )
    pipe.set_progress_bar_config(disable=True)
    photo = Image.new("RGB", (args.width, args.height), (90, 140, 200))
    results = {"gpu": torch.cuda.get_device_name(), "size": vars(args) | {"out": str(args.out)}}
    runs = {}
    for batch in [1, *args.batches]:  # the first batch-1 run warms up and is not reported
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(
            image=[photo] * batch,
            prompt=["waves over the sea"] * batch,
            negative_prompt=[""] * batch,
            num_frames=args.frames,
            height=args.height,
            width=args.width,
            num_inference_steps=args.steps,
            guidance_scale=3.0,
            output_type="np",
        )
        torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        runs[str(batch)] = {
            "seconds": round(seconds, 2),
            "gpu_seconds_per_video": round(seconds / batch, 2),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1),
        }
    results["batches"] = runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
