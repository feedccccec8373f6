"""What provenance costs per video, by file size (1, 5 and 20 MB): the labelling remux (moov
first, tags, XMP), the C2PA signing and the verification after signing, each the code the
provenance stage runs, with a development chain and no timestamp authority (a TSA adds one
HTTP round trip per video, which depends on the network, not on the file).

Videos of the asked size are made of noise frames, nearly incompressible, so that the size
is media data as in a real video, not padding.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from alive.media import encode_h264
from alive.provenance import verify_video
from alive_tools.signing_chain import ensure_dev_chain
from services.provenance.settings import ProvenanceSettings
from services.provenance.signing import (
    GenerationFacts,
    VideoSigner,
    label_ai_generated,
    signer_from_settings,
)

SIZES_MB = (1, 5, 20)
SIDE = 512
FACTS = GenerationFacts(
    model_name="alive_animator",
    model_version="procedural-animator-1",
    seed=1,
    frames=0,
    fps=24,
    duration_ms=0,
    width=SIDE,
    height=SIDE,
    checkpoints_passed=("moderation-photo", "moderation-prompt"),
    checkpoints_after_signing=("moderation-video",),
    policy_versions={},
    created_at="2025-01-01T00:00:00+00:00",
)


def video_of_size(path: Path, megabytes: int) -> int:
    """Writes an H.264 MP4 of about ``megabytes`` MB to ``path``; returns its size."""
    rng = np.random.default_rng(megabytes)
    per_frame = 0.48e6  # bytes a 512x512 noise frame takes at crf 0
    frames = max(2, round(megabytes * 1e6 / per_frame))
    noise = rng.integers(0, 256, (frames, SIDE, SIDE, 3), dtype=np.uint8)
    encode_h264(noise, 24, path, crf=0, preset="ultrafast")
    return path.stat().st_size


def signing_cost(rounds: int = 5) -> dict[str, object]:
    """Milliseconds per video (median of ``rounds``) for each size: label, sign, verify, all."""
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        chain = ensure_dev_chain(work / "certs")
        settings = ProvenanceSettings(cert_dir=work / "certs", trust_anchor_path=chain.root_cert)
        signer = VideoSigner(signer_from_settings(settings))
        anchors = chain.root_cert.read_bytes()
        photo = work / "photo.png"
        Image.new("RGB", (64, 64), (90, 140, 200)).save(photo)
        for megabytes in SIZES_MB:
            video = work / f"{megabytes}mb.mp4"
            size = video_of_size(video, megabytes)
            timings: dict[str, list[float]] = {"label": [], "sign": [], "verify": []}
            for n in range(rounds):
                labelled, signed = work / f"labelled-{n}.mp4", work / f"signed-{n}.mp4"
                t0 = time.perf_counter()
                label_ai_generated(video, labelled)
                t1 = time.perf_counter()
                signer.sign(labelled, photo, "image/png", FACTS, signed)
                t2 = time.perf_counter()
                check = verify_video(signed, anchors)
                t3 = time.perf_counter()
                assert check.trusted, check.failure_codes
                for step, took in (("label", t1 - t0), ("sign", t2 - t1), ("verify", t3 - t2)):
                    timings[step].append(took * 1000)
            medians = {f"{k}_ms": round(statistics.median(v), 1) for k, v in timings.items()}
            medians["total_ms"] = round(sum(medians.values()), 1)
            results[f"{megabytes}_mb"] = {"bytes": size, **medians}
    return results


if __name__ == "__main__":
    print(json.dumps(signing_cost(), indent=2))
