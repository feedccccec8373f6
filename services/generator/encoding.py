"""Encode generated RGB frames to an H.264 / yuv420p MP4 with faststart and exact frame timing."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt


def encode_h264(
    frames: npt.NDArray[np.uint8],
    fps: int,
    out_path: Path,
    *,
    crf: int = 23,
    preset: str = "veryfast",
) -> None:
    """Write uint8 RGB frames [T, H, W, 3] to `out_path` as H.264 at `fps`.

    Every input frame becomes exactly one output frame and the file lasts exactly T / fps s.
    """
    if frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    count, height, width = frames.shape[:3]
    if count == 0:
        raise ValueError("no frames to encode")
    if height % 2 or width % 2:
        # yuv420p subsamples chroma 2x2, so libx264 rejects odd dimensions.
        raise ValueError(f"frame size must be even, got {width}x{height}")
    if not 0 < fps <= 240:
        raise ValueError(f"fps must be in 1..240, got {fps}")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # faststart puts the moov atom first so players can start before the whole file arrives.
    with av.open(str(out_path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": preset})
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frames[index]), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))
