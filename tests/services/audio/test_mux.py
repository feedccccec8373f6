"""Tests for mux_audio: video stream copied bit-exactly, AAC track matching the video's length."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from alive.media import encode_h264, probe_mp4, read_frames
from services.audio.mux import mux_audio
from services.audio.soundscape import render

AAC_FRAME_S = 1024 / 48000


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    y, x = np.mgrid[0:96, 0:128]
    frames = np.stack(
        [np.stack([(x + 5 * t) % 256, y * 2, (x + y + t) % 256], -1) for t in range(36)]
    ).astype(np.uint8)
    path = tmp_path_factory.mktemp("mux") / "video.mp4"
    encode_h264(frames, 24, path)
    return path


def _video_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


@pytest.mark.parametrize(
    ("seconds", "rate"), [(1.5, 48000), (3.0, 48000), (0.4, 48000), (1.5, 44100)]
)
def test_mux_copies_video_and_fits_audio(
    video: Path, tmp_path: Path, seconds: float, rate: int
) -> None:
    out = tmp_path / "with_audio.mp4"
    mux_audio(video, render(["waves"], seconds, sample_rate=rate), rate, out)

    before, after = probe_mp4(video), probe_mp4(out)
    assert (after.frame_count, after.width, after.height) == (36, 128, 96)
    assert after.duration_s == before.duration_s == pytest.approx(1.5)
    assert after.audio_codec == "aac"
    assert (after.audio_sample_rate, after.audio_channels) == (48000, 2)
    assert after.audio_duration_s is not None
    # Priming is removed by the edit list; only the last frame's padding may remain.
    assert abs(after.audio_duration_s - after.duration_s) <= AAC_FRAME_S + 1e-9

    assert _video_packets(out) == _video_packets(video), "video must be stream-copied"
    assert np.array_equal(read_frames(out, [0, 35]), read_frames(video, [0, 35]))
    data = out.read_bytes()
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_track_durations_in_container_match(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "durations.mp4"
    mux_audio(video, render(["music"], 2.0), 48000, out)
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.duration is not None and audio.time_base is not None
        assert float(audio.duration * audio.time_base) == pytest.approx(1.5, abs=1e-6)
        assert audio.bit_rate is not None and 64_000 < audio.bit_rate < 200_000


def test_padded_audio_is_silent_at_the_end(video: Path, tmp_path: Path) -> None:
    out = tmp_path / "padded.mp4"
    tone = np.tile(np.sin(np.linspace(0, 2000, 24000)), (2, 1)).astype(np.float32) * 0.5
    mux_audio(video, tone, 48000, out)
    with av.open(str(out)) as container:
        decoded = np.concatenate(
            [frame.to_ndarray() for frame in container.decode(container.streams.audio[0])],
            axis=1,
        )
    assert np.abs(decoded[:, 6000:18000]).max() > 0.3
    assert np.abs(decoded[:, 36000:]).max() < 0.01


@pytest.mark.parametrize("shape", [(48000,), (1, 48000), (3, 48000)])
def test_rejects_non_stereo_audio(video: Path, tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError):
        mux_audio(video, np.zeros(shape, np.float32), 48000, tmp_path / "bad.mp4")
