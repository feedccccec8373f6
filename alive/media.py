"""Shared media helpers: encode RGB frames to H.264 MP4 (with the visible AI label drawn into
each frame as it is encoded: no second encode), probe MP4 files by decoding them, read video
frames as RGB arrays and the soundtrack as mono samples. The generator's models encode next
to themselves with these (only compressed video crosses the network), and the stages check
what they receive."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont

from alive.scratch import scratch_folder


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


def _existing(path: Path) -> str:
    """``path`` as FFmpeg opens it, once it is known to be a file."""
    if not path.is_file():
        raise MediaError(f"{path}: no such file")
    return str(path)


def _open(path: Path) -> av.container.InputContainer:
    return _open_source(_existing(path), path)


def _open_source(source: str | io.BytesIO, name: Path) -> av.container.InputContainer:
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"{name}: cannot open media container: {exc}") from exc


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
            f"{path}: truncated or corrupt, read {decoded} of {stream.frames} video frames"
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
    return probe_mp4_keeping(path, ())[0]


def probe_mp4_keeping(
    path: Path, indices: Sequence[int]
) -> tuple[MediaInfo, dict[int, npt.NDArray[np.uint8]]]:
    """``probe_mp4``, keeping the frames at ``indices`` (RGB) that the video has, from the
    same decode: a checkpoint that judges frames it can name in advance decodes once."""
    path = Path(path)
    source = _existing(path)
    kept: dict[int, npt.NDArray[np.uint8]] = {}
    return _probe(lambda: source, path, set(indices), kept), kept


def probe_mp4_bytes(data: bytes) -> MediaInfo:
    """``probe_mp4`` of MP4 bytes, in memory: every frame decoded (the model tests check a
    model's answer with it; the generator's own check is ``mp4_layout_bytes``)."""
    return _probe(lambda: io.BytesIO(data), Path("<answer>"), set(), {})


@dataclass(frozen=True)
class VideoLayout:
    """What an MP4's container says of its video, read without decoding it."""

    width: int
    height: int
    frame_count: int


def mp4_layout_bytes(data: bytes) -> VideoLayout:
    """The frames (video packets: one a frame, as H.264 in MP4 stores them) and the size the
    stream declares, of MP4 bytes, demuxed, not decoded: a sixth of ``probe_mp4_bytes``'s CPU
    for a default-size video. Whether every frame decodes is the video checkpoint's to find
    (it decodes them all) before anything is published. Raises MediaError when the container
    cannot be read, has no video, or holds fewer frames than its sample table lists."""
    name = Path("<answer>")
    with _open_source(io.BytesIO(data), name) as container:
        stream = _video_stream(container, name)
        try:
            count = sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as exc:
            raise MediaError(f"{name}: video does not demux: {exc}") from exc
        _check_complete(stream, count, name)
        return VideoLayout(stream.codec_context.width, stream.codec_context.height, count)


def _probe(
    source: Callable[[], str | io.BytesIO],
    path: Path,
    keep: set[int],
    kept: dict[int, npt.NDArray[np.uint8]],
) -> MediaInfo:
    """``probe_mp4`` of what ``source`` opens, putting the frames at ``keep`` in ``kept``;
    ``path`` names it in errors."""
    with _open_source(source(), path) as container:
        stream = _video_stream(container, path)
        has_audio = bool(container.streams.audio)
        count = 0
        width = height = 0
        try:
            for frame in container.decode(stream):
                width, height = frame.width, frame.height
                if count in keep:
                    kept[count] = frame.to_ndarray(format="rgb24").astype(np.uint8, copy=False)
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
    if has_audio:  # a fresh container decodes the audio independently of the video demux
        with _open_source(source(), path) as container:
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


def read_audio(path: Path, sample_rate: int) -> npt.NDArray[np.float32]:
    """The first audio stream as mono float32 samples in [-1, 1] at ``sample_rate``; empty
    when the file has no audio. (faster-whisper's own decoder collects garbage on every
    call, which costs a process holding large models hundreds of milliseconds.)"""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[npt.NDArray[Any]] = []
    with _open(path) as container:
        if not container.streams.audio:
            return np.zeros(0, np.float32)
        try:
            for frame in container.decode(audio=0):
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.FFmpegError as exc:
            raise MediaError(f"{path}: cannot decode the audio: {exc}") from exc
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


Corner = Literal["top-left", "top-right", "bottom-left", "bottom-right"]
CORNERS: tuple[Corner, ...] = ("top-left", "top-right", "bottom-left", "bottom-right")


Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels
FRONTAL_FACE_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class VisibleLabel:
    """A short text mark ("AI-generated") in a corner of every frame: white on a dark,
    rounded box, blended with ``opacity``; its text is ``size`` of the frame's shorter side
    high (0.045: 26 px on a 576x1024 video, about 2 mm on a phone held upright). It goes in
    ``corner`` unless that covers a face found in the video; then in the first other corner
    that covers none."""

    text: str = "AI-generated"
    corner: Corner = "top-left"
    size: float = 0.045
    opacity: float = 0.85

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("the label text is empty")
        if self.corner not in CORNERS:
            raise ValueError(f"label corner must be one of {CORNERS}, got {self.corner!r}")
        if not 0.01 <= self.size <= 0.25:
            raise ValueError(f"label size must be 0.01..0.25 of the shorter side, got {self.size}")
        if not 0.0 < self.opacity <= 1.0:
            raise ValueError(f"label opacity must be in (0, 1], got {self.opacity}")

    def overlay(self, width: int, height: int, avoid: Sequence[Box] = ()) -> LabelOverlay:
        """The label rendered once for frames of this size, to blend into each of them, in a
        corner that covers none of the ``avoid`` boxes (faces) if one does."""
        text_px = max(10, round(self.size * min(width, height)))
        font = ImageFont.load_default(size=text_px)
        left, top, right, bottom = (round(v) for v in font.getbbox(self.text))
        pad = max(3, text_px // 3)
        margin = max(2, round(0.03 * min(width, height)))
        # On a frame too small for it the label is cut at the margin, never drawn outside.
        box_w = min(width - 2 * margin, right - left + 2 * pad)
        box_h = min(height - 2 * margin, bottom - top + 2 * pad)
        patch = Image.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(patch)
        draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=(0, 0, 0, 150))
        draw.text((pad - left, pad - top), self.text, font=font, fill=(255, 255, 255, 255))
        rgba = np.asarray(patch, dtype=np.float32) / 255.0

        def place(corner: Corner) -> tuple[int, int]:
            y = margin if corner.startswith("top") else height - box_h - margin
            x = margin if corner.endswith("left") else width - box_w - margin
            return y, x

        def clear(corner: Corner) -> bool:
            y, x = place(corner)
            return not any(
                x < x1 and x0 < x + box_w and y < y1 and y0 < y + box_h for x0, y0, x1, y1 in avoid
            )

        preference = (self.corner, *(c for c in CORNERS if c != self.corner))
        y, x = place(next((c for c in preference if clear(c)), self.corner))
        return LabelOverlay(y, x, rgba[..., :3] * 255.0, rgba[..., 3:] * self.opacity)


# How the label looks for faces: on a copy at most this many pixels on its longer side (the
# cascade's 24 px window is then 48 px of a 1024 px frame), windows growing by this step,
# kept where this many overlap. Against a step of 1.1 and 5: about 30% less CPU (the three
# frames of a default video took 0.38 s instead of 0.54 s from the cat sample, 0.27 s
# instead of 0.37 s from the astronaut), and as many of 87 portraits of 120-700 px found
# (67) on a 576x1024 frame.
LABEL_FACE_SEARCH_SIDE = 512
LABEL_FACE_SCALE_STEP = 1.15
LABEL_FACE_NEIGHBOURS = 4


def face_boxes(frames: npt.NDArray[np.uint8], samples: int = 3) -> list[Box]:
    """Frontal faces (OpenCV's Haar cascade, shipped in its wheel) in ``samples`` frames
    spread over the video, in frame pixels: where a label must not go."""
    import cv2

    cascade = frontal_face_cascade()
    boxes: list[Box] = []
    for index in np.linspace(0, len(frames) - 1, samples).round().astype(int):
        grey = cv2.cvtColor(np.ascontiguousarray(frames[index]), cv2.COLOR_RGB2GRAY)
        scale = min(1.0, LABEL_FACE_SEARCH_SIDE / max(grey.shape))
        small = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = cascade.detectMultiScale(small, LABEL_FACE_SCALE_STEP, LABEL_FACE_NEIGHBOURS)
        for x, y, w, h in found:
            boxes.append(
                (int(x / scale), int(y / scale), int((x + w) / scale), int((y + h) / scale))
            )
    return boxes


@functools.cache
def frontal_face_cascade() -> Any:
    """OpenCV's frontal-face Haar cascade, from the file its wheel ships (loaded once)."""
    import cv2

    folder = Path(cv2.data.haarcascades)  # type: ignore[attr-defined]
    cascade = cv2.CascadeClassifier(str(folder / FRONTAL_FACE_CASCADE))
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {FRONTAL_FACE_CASCADE} did not load")
    return cascade


@dataclass(frozen=True)
class LabelOverlay:
    """A rendered label and where it goes: ``alpha`` [h, w, 1] blends ``rgb`` [h, w, 3] in."""

    y: int
    x: int
    rgb: npt.NDArray[np.float32]
    alpha: npt.NDArray[np.float32]

    def draw_on(self, frame: npt.NDArray[np.uint8]) -> None:
        """Blends the label into ``frame`` (uint8 RGB [H, W, 3]) in place."""
        h, w = self.alpha.shape[:2]
        region = frame[self.y : self.y + h, self.x : self.x + w]
        blended = self.rgb * self.alpha + region * (1.0 - self.alpha)
        region[...] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def encode_h264(
    frames: npt.NDArray[np.uint8],
    fps: int,
    out_path: Path,
    *,
    crf: int = 23,
    preset: str = "veryfast",
    label: VisibleLabel | None = None,
) -> None:
    """Write uint8 RGB frames [T, H, W, 3] to `out_path` as H.264 at `fps`, with ``label``
    drawn into each frame on its way to the encoder (``frames`` itself is left as it is).

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
        overlay = label.overlay(width, height, face_boxes(frames)) if label is not None else None
        for index in range(count):
            picture = np.ascontiguousarray(frames[index])
            if overlay is not None:
                picture = picture.copy()
                overlay.draw_on(picture)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, fps)
            out.mux(stream.encode(frame.reformat(format="yuv420p")))
        out.mux(stream.encode(None))


def encode_h264_bytes(frames: npt.NDArray[np.uint8], fps: int, **options: Any) -> bytes:
    """``encode_h264`` to bytes. Through a temporary file: faststart rewrites the file, which
    FFmpeg does only by name."""
    with scratch_folder("encode") as folder:
        path = Path(folder) / "video.mp4"
        encode_h264(frames, fps, path, **options)
        return path.read_bytes()
