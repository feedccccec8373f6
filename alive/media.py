"""Shared media helpers: probe MP4 files by decoding them and read video frames as RGB arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.stream import VideoStream


class MediaError(Exception):
    """A media file is missing, unreadable, truncated or has no decodable video."""


@dataclass(frozen=True)
class MediaInfo:
    """What a media file really contains, measured by decoding it."""

    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    video_codec: str
    audio_codec: str | None
    audio_duration_s: float | None
    audio_sample_rate: int | None
    audio_channels: int | None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


def _open(path: Path) -> av.container.InputContainer:
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"{path}: cannot open media container: {exc}") from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> VideoStream:
    if not container.streams.video:
        raise MediaError(f"{path}: no video stream")
    return container.streams.video[0]


def _check_complete(stream: VideoStream, decoded: int, path: Path) -> None:
    # The sample table of a truncated MP4 still lists every frame while the demuxer
    # silently stops at EOF, so fewer decoded frames than listed means lost data.
    if decoded == 0:
        raise MediaError(f"{path}: video stream has no decodable frames")
    if stream.frames and decoded < stream.frames:
        raise MediaError(
            f"{path}: truncated or corrupt, decoded {decoded} of {stream.frames} video frames"
        )


def _fps(stream: VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise MediaError("video stream has no frame rate")
    return float(rate)


def _decoded_audio_samples(container: av.container.InputContainer, stream: AudioStream) -> int:
    samples = 0
    for frame in container.decode(stream):
        samples += frame.samples
    return samples


def probe_mp4(path: Path) -> MediaInfo:
    """Decode every video frame (and the first audio track) of `path` and describe it.

    Raises MediaError when the file cannot be opened, has no video, or does not decode fully.
    """
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        count = 0
        width = height = 0
        try:
            for frame in container.decode(stream):
                width, height = frame.width, frame.height
                count += 1
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: video does not decode: {exc}") from exc
        _check_complete(stream, count, path)
        fps = _fps(stream)
        video_codec = stream.codec_context.name

    audio_codec: str | None = None
    audio_duration: float | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None
    # A fresh container decodes the audio track independently of the video demux position.
    with _open(path) as container:
        if container.streams.audio:
            astream = container.streams.audio[0]
            try:
                samples = _decoded_audio_samples(container, astream)
            except av.FFmpegError as exc:
                raise MediaError(f"{path}: audio does not decode: {exc}") from exc
            audio_codec = astream.codec_context.name
            audio_rate = astream.codec_context.sample_rate
            audio_channels = astream.codec_context.channels
            audio_duration = samples / audio_rate if audio_rate else None

    return MediaInfo(
        width=width,
        height=height,
        fps=fps,
        frame_count=count,
        duration_s=count / fps,
        video_codec=video_codec,
        audio_codec=audio_codec,
        audio_duration_s=audio_duration,
        audio_sample_rate=audio_rate,
        audio_channels=audio_channels,
    )


def read_frames(path: Path, indices: Sequence[int] | None = None) -> npt.NDArray[np.uint8]:
    """Return decoded frames as uint8 RGB [N, H, W, 3]: all frames, or `indices` in the given order.

    Raises IndexError for an index outside the decoded frame range, MediaError for bad files.
    """
    path = Path(path)
    wanted = None if indices is None else [int(i) for i in indices]
    if wanted is not None and any(i < 0 for i in wanted):
        raise IndexError(f"negative frame index in {wanted}")
    keep = None if wanted is None else set(wanted)
    last = None if wanted is None or not wanted else max(wanted)
    frames: dict[int, npt.NDArray[np.uint8]] = {}
    count = 0
    with _open(path) as container:
        stream = _video_stream(container, path)
        try:
            for frame in container.decode(stream):
                if keep is None or count in keep:
                    frames[count] = frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)
                count += 1
                if last is not None and count > last:
                    break
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: video does not decode: {exc}") from exc
        if last is None:
            _check_complete(stream, count, path)
    if wanted is None:
        return np.stack([frames[i] for i in range(count)])
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise IndexError(f"{path}: frame indices {missing} out of range (decoded {count})")
    if not wanted:
        return np.zeros((0, stream.height, stream.width, 3), dtype=np.uint8)
    return np.stack([frames[i] for i in wanted])
