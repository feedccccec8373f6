"""The visible AI label: drawn into the frames as a model's video is encoded (alive/model_io.py,
alive/media.py), as the model config's parameters say; legible at phone size; absent when
off; never in the raw FRAMES output."""

from __future__ import annotations

import tempfile
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from alive.media import CORNERS, VisibleLabel, face_boxes, probe_mp4_bytes, read_frames
from alive.model_io import VideoOutputs, visible_label
from services.moderation.ocr import TextReader
from tests.support import photo_bytes

OUTPUTS = [
    {"name": "VIDEO", "data_type": "TYPE_STRING"},
    {"name": "FRAMES", "data_type": "TYPE_UINT8"},
]


def config(**parameters: str) -> dict[str, Any]:
    return {
        "output": OUTPUTS,
        "parameters": {key: {"string_value": value} for key, value in parameters.items()},
    }


def grey(frames: int = 4, height: int = 160, width: int = 96) -> npt.NDArray[np.uint8]:
    return np.full((frames, height, width, 3), 120, dtype=np.uint8)


def decoded(outputs: VideoOutputs, video: npt.NDArray[np.uint8], fps: int = 8) -> Any:
    """The first and last frames of the MP4 ``outputs`` encodes for ``video``, decoded."""
    ((name, encoded),) = outputs.tensors(["VIDEO"], [video], [fps])
    assert name == "VIDEO"
    data = encoded[0, 0]
    assert probe_mp4_bytes(data).frame_count == len(video)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.mp4"
        path.write_bytes(data)
        return read_frames(path, [0, len(video) - 1])


def marked(frame: npt.NDArray[np.uint8], corner: str, share: float = 0.35) -> bool:
    """Whether the corner of a grey frame holds the label: white text on a dark box."""
    height, width = frame.shape[:2]
    h, w = int(height * share), width // 2
    rows = slice(0, h) if corner.startswith("top") else slice(height - h, height)
    cols = slice(0, w) if corner.endswith("left") else slice(width - w, width)
    region = frame[rows, cols].astype(int)
    return bool((region > 200).any() and (region < 80).any())


def test_the_label_is_on_by_default_with_the_default_look() -> None:
    assert visible_label(config()) == VisibleLabel()
    assert VisibleLabel().text == "AI-generated"
    assert VideoOutputs.of(config()).label == VisibleLabel()


def test_the_parameters_set_the_label_and_off_turns_it_off() -> None:
    chosen = config(
        ai_label_text="Made with AI",
        ai_label_corner="bottom-right",
        ai_label_size="0.06",
        ai_label_opacity="0.5",
    )
    assert visible_label(chosen) == VisibleLabel("Made with AI", "bottom-right", 0.06, 0.5)
    assert visible_label(config(ai_label="off")) is None
    assert VideoOutputs.of(config(ai_label="OFF")).label is None


@pytest.mark.parametrize(
    "parameters",
    [
        {"ai_label": "maybe"},
        {"ai_label_corner": "middle"},
        {"ai_label_size": "0.9"},
        {"ai_label_size": "big"},
        {"ai_label_opacity": "0"},
        {"ai_label_text": "   "},
    ],
)
def test_a_bad_parameter_stops_the_model_at_load(parameters: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        VideoOutputs.of(config(**parameters))


@pytest.mark.parametrize("corner", CORNERS)
def test_the_label_is_drawn_in_every_frame_in_its_corner(corner: str) -> None:
    outputs = VideoOutputs.of(config(ai_label_corner=corner))
    for frame in decoded(outputs, grey(height=320, width=180)):
        assert marked(frame, corner)
        others = [c for c in CORNERS if c != corner]
        assert not any(marked(frame, other) for other in others), corner


def test_off_leaves_the_frames_as_they_were() -> None:
    for frame in decoded(VideoOutputs.of(config(ai_label="off")), grey()):
        assert not any(marked(frame, corner) for corner in CORNERS)
        assert np.abs(frame.astype(int) - 120).max() < 6  # only coding noise


def test_the_raw_frames_output_is_not_labelled_and_not_changed() -> None:
    video = grey()
    before = video.copy()
    outputs = VideoOutputs.of(config())
    tensors = dict(outputs.tensors(["VIDEO", "FRAMES"], [video], [8]))
    assert np.array_equal(tensors["FRAMES"][0], before)
    assert np.array_equal(video, before)  # drawing works on copies


def test_the_label_reads_at_phone_size() -> None:
    # 576x1024 (9:16, the default output) on a photo, as a phone shows it: OCR reads it.
    photo = Image.open(BytesIO(photo_bytes(576, 1024, seed=3))).convert("RGB")
    video = np.repeat(np.asarray(photo)[np.newaxis], 2, axis=0)
    frame = decoded(VideoOutputs.of(config()), video, fps=24)[0]
    reader = TextReader(max_side=1024, min_score=0.5)
    reader.load()
    # In a sans-serif font capital I and small l are one glyph: OCR may read either.
    assert reader.read(frame).replace(" ", "").replace("Al-", "AI-") == "AI-generated"
    label = VisibleLabel().overlay(576, 1024)
    assert label.alpha.shape[0] >= 30  # the box: about 3 % of the height


def test_the_label_fits_a_tiny_frame() -> None:
    # The smallest output a request may ask for: the label is cut, never out of the frame.
    (frame, _) = decoded(VideoOutputs.of(config()), grey(2, 64, 64))
    assert frame.shape == (64, 64, 3)
    assert marked(frame, "top-left", share=0.5)


def test_the_label_moves_off_a_face_to_the_next_corner_clear_of_faces() -> None:
    """A portrait's face in the top-left quarter of a grey 9:16 frame: found in the video,
    the default top-left label moves to the top-right; without the face it stays."""
    sample = Path(__file__).resolve().parents[2] / "samples" / "astronaut.jpg"
    portrait = np.asarray(Image.open(sample).convert("RGB").resize((270, 270)))
    video = np.full((4, 1024, 576, 3), 120, dtype=np.uint8)
    video[:, 10:280, 10:280] = portrait
    faces = face_boxes(video)
    assert faces and all(x1 <= 300 and y1 <= 300 for _, _, x1, y1 in faces)
    outputs = VideoOutputs.of(config())
    for frame in decoded(outputs, video):
        assert marked(frame[300:], "bottom-right") is False  # nothing below the portrait
        assert marked(frame, "top-right")
    plain = VisibleLabel().overlay(576, 1024, avoid=[])
    assert (plain.y, plain.x) < (100, 100)  # the configured corner when no face is in it
    moved = VisibleLabel().overlay(576, 1024, avoid=faces)
    assert moved.x > 288 and moved.y < 100
