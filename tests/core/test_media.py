"""Tests for alive.media: probing and frame reading of encoded MP4s, and rejection of bad files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from alive.media import (
    MediaError,
    MediaInfo,
    VideoLayout,
    encode_h264,
    mp4_layout_bytes,
    probe_mp4,
    probe_mp4_bytes,
    probe_mp4_keeping,
    read_audio,
    read_frames,
)


def _moving_frames(count: int, height: int, width: int) -> npt.NDArray[Any]:
    y, x = np.mgrid[0:height, 0:width]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for t in range(count):
        frames[t, ..., 0] = (x * 4 + t * 8) % 256
        frames[t, ..., 1] = (y * 4) % 256
        frames[t, ..., 2] = 128 + t
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, npt.NDArray[Any]]:
    frames = _moving_frames(10, 48, 64)
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    encode_h264(frames, 24, path, crf=18)
    return path, frames


def test_probe_reports_decoded_stream(clip: tuple[Path, npt.NDArray[Any]]) -> None:
    info = probe_mp4(clip[0])
    assert info == MediaInfo(
        width=64,
        height=48,
        fps=24.0,
        frame_count=10,
        duration_s=10 / 24,
        video_codec="h264",
        audio_codec=None,
        audio_duration_s=None,
        audio_sample_rate=None,
        audio_channels=None,
    )
    assert not info.has_audio


def test_read_all_frames_matches_source(clip: tuple[Path, npt.NDArray[Any]]) -> None:
    path, source = clip
    frames = read_frames(path)
    assert frames.shape == (10, 48, 64, 3)
    assert frames.dtype == np.uint8
    # Lossy yuv420p round trip: close, not identical.
    assert np.abs(frames.astype(int) - source.astype(int)).mean() < 8


def test_read_selected_frames_keeps_order(clip: tuple[Path, npt.NDArray[Any]]) -> None:
    path, _ = clip
    every = read_frames(path)
    picked = read_frames(path, [3, 0, 3, 9])
    assert np.array_equal(picked, every[[3, 0, 3, 9]])
    assert read_frames(path, []).shape == (0, 48, 64, 3)


@pytest.mark.parametrize("index", [10, -1])
def test_read_frame_out_of_range(clip: tuple[Path, npt.NDArray[Any]], index: int) -> None:
    with pytest.raises(IndexError):
        read_frames(clip[0], [index])


def test_random_bytes_raise_media_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError):
        probe_mp4(path)
    with pytest.raises(MediaError):
        read_frames(path)


@pytest.mark.parametrize("keep", [0.0, 0.02, 0.5, 0.97])
def test_truncated_mp4_raises_media_error(
    clip: tuple[Path, npt.NDArray[Any]], tmp_path: Path, keep: float
) -> None:
    data = clip[0].read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(MediaError):
        probe_mp4(path)
    with pytest.raises(MediaError):
        read_frames(path)


def test_the_layout_is_what_decoding_finds_and_a_cut_container_is_refused(
    clip: tuple[Path, npt.NDArray[Any]],
) -> None:
    """The container-level check (the generator's, of a model's answer) reads the frames and
    size decoding finds, and refuses what misses frames its sample table lists. A cut in the
    last frame's bytes is left to a decode (the video checkpoint's)."""
    data = clip[0].read_bytes()
    info = probe_mp4_bytes(data)
    assert mp4_layout_bytes(data) == VideoLayout(info.width, info.height, info.frame_count)
    for keep in (0.0, 0.02, 0.5):
        with pytest.raises(MediaError):
            mp4_layout_bytes(data[: int(len(data) * keep)])


def test_missing_file_raises_media_error(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such file"):
        probe_mp4(tmp_path / "absent.mp4")


def test_the_soundtrack_is_read_as_mono_samples_at_the_asked_rate(tmp_path: Path) -> None:
    """A 2 s 440 Hz tone in AAC at 48 kHz comes back at 16 kHz, mono, 2 s long, with its
    pitch; a file without audio gives no samples."""
    frames = np.zeros((24, 32, 32, 3), np.uint8)
    silent = tmp_path / "silent.mp4"
    encode_h264(frames, 12, silent)
    assert read_audio(silent, 16000).size == 0
    seconds = np.arange(2 * 48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)
    voiced = tmp_path / "tone.mp4"
    with av.open(str(voiced), mode="w") as container:
        stream = container.add_stream("aac", rate=48000, layout="stereo")
        for start in range(0, tone.size, 1024):
            chunk = tone[start : start + 1024]
            frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]), "fltp", "stereo")
            frame.sample_rate = 48000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    samples = read_audio(voiced, 16000)
    assert samples.dtype == np.float32 and abs(samples.size - 2 * 16000) < 1600
    spectrum = np.abs(np.fft.rfft(samples[4000:12000]))
    assert abs(np.argmax(spectrum) * 16000 / 8000 - 440) < 5


def test_probing_bytes_in_memory_reports_what_probing_the_file_does(tmp_path: Path) -> None:
    """A model's answer is probed from memory: the same description as from a file, its
    soundtrack included."""
    path = tmp_path / "voiced.mp4"
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=12)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("aac", rate=48000, layout="mono")
        for frame in _moving_frames(12, 48, 64):
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        for start in range(0, 48000, 1024):
            samples = np.zeros((1, 1024), np.float32)
            chunk = av.AudioFrame.from_ndarray(samples, "fltp", "mono")
            chunk.sample_rate, chunk.pts = 48000, start
            container.mux(audio.encode(chunk))
        container.mux(audio.encode(None))
    from_file = probe_mp4(path)
    assert (from_file.frame_count, from_file.audio_codec) == (12, "aac")
    assert probe_mp4_bytes(path.read_bytes()) == from_file
    with pytest.raises(MediaError):  # a torn answer
        probe_mp4_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_probing_keeps_the_frames_asked_for_as_reading_them_does(
    clip: tuple[Path, npt.NDArray[Any]],
) -> None:
    info, kept = probe_mp4_keeping(clip[0], [9, 0, 4, 40])  # 40: past the end, not kept
    assert info == probe_mp4(clip[0]) and sorted(kept) == [0, 4, 9]
    np.testing.assert_array_equal(
        np.stack([kept[i] for i in (0, 4, 9)]), read_frames(clip[0], [0, 4, 9])
    )
