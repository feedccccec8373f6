"""Tests for encode_h264: exact frame count, size and duration, faststart, input validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from alive.media import encode_h264, probe_mp4, read_frames


def _frames(count: int, height: int, width: int) -> npt.NDArray[Any]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.stack([np.roll(base, shift=2 * t, axis=1) for t in range(count)])


@pytest.mark.parametrize(("count", "fps"), [(1, 24), (30, 30), (49, 24), (17, 8)])
def test_frame_count_size_and_duration_exact(tmp_path: Path, count: int, fps: int) -> None:
    path = tmp_path / "out.mp4"
    encode_h264(_frames(count, 64, 96), fps, path)
    info = probe_mp4(path)
    assert (info.frame_count, info.width, info.height) == (count, 96, 64)
    assert info.fps == fps
    assert info.duration_s == pytest.approx(count / fps, abs=1e-9)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.pix_fmt == "yuv420p"
        # The container's own duration is exact too (microseconds).
        assert container.duration == round(count / fps * 1_000_000)


def test_pixels_survive_round_trip(tmp_path: Path) -> None:
    y, x = np.mgrid[0:64, 0:96]
    frame = np.stack([x * 2, y * 3, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    path = tmp_path / "gradient.mp4"
    encode_h264(np.stack([frame] * 4), 24, path, crf=12)
    decoded = read_frames(path, [0])[0]
    assert np.abs(decoded.astype(int) - frame.astype(int)).mean() < 3


def test_faststart_puts_moov_first(tmp_path: Path) -> None:
    path = tmp_path / "fast.mp4"
    encode_h264(_frames(8, 32, 32), 24, path)
    data = path.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


@pytest.mark.parametrize(("height", "width"), [(63, 96), (64, 95), (1, 1)])
def test_odd_size_rejected(tmp_path: Path, height: int, width: int) -> None:
    with pytest.raises(ValueError, match="even"):
        encode_h264(np.zeros((2, height, width, 3), np.uint8), 24, tmp_path / "odd.mp4")


@pytest.mark.parametrize(
    "frames",
    [
        np.zeros((2, 32, 32, 3), np.float32),
        np.zeros((2, 32, 32), np.uint8),
        np.zeros((2, 32, 32, 4), np.uint8),
        np.zeros((0, 32, 32, 3), np.uint8),
    ],
)
def test_bad_frames_rejected(tmp_path: Path, frames: npt.NDArray[Any]) -> None:
    with pytest.raises(ValueError):
        encode_h264(frames, 24, tmp_path / "bad.mp4")
