"""The visible AI label through a real model's adapter: alive_animator's model.py (loaded by
path, the backend's utilities faked) labels its VIDEO as its config.pbtxt says, with no
change to the model: the shared encoding path (alive/model_io.py) draws it."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from alive.media import read_frames
from tests.models.backend_stand_in import BACKEND_UTILS, Request

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "alive_animator"


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", BACKEND_UTILS)
    spec = importlib.util.spec_from_file_location(
        "animator_for_label", MODEL_DIR / "1" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_config(**label: str) -> dict[str, Any]:
    """config.pbtxt as Triton passes it to initialize, with ``label`` parameters added."""
    parsed = text_format.Parse(
        (MODEL_DIR / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    config = json_format.MessageToDict(parsed, preserving_proto_field_name=True)
    for key, value in label.items():
        config["parameters"][key] = {"string_value": value}
    return config


def first_frame(adapter: ModuleType, config: dict[str, Any]) -> np.ndarray:
    model = adapter.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    image = np.full((320, 180, 3), 120, dtype=np.uint8)  # flat grey: only the label has edges
    request = Request(
        {
            "IMAGE": image[np.newaxis],
            "PROMPT": np.array([[b"still"]], dtype=np.object_),
            "SEED": np.array([[1]], np.int64),
            "NUM_FRAMES": np.array([[3]], np.int32),
            "FPS": np.array([[8]], np.int32),
        },
        ("VIDEO",),
    )
    (response,) = model.execute([request])
    assert response.error is None, response.error
    (video,) = response.output_tensors
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.mp4"
        path.write_bytes(video.as_numpy()[0, 0])
        frame: np.ndarray = read_frames(path, [0])[0]
    return frame


def has_label(frame: np.ndarray) -> bool:
    corner = frame[: frame.shape[0] // 4, : frame.shape[1] // 2].astype(int)
    return bool((corner > 200).any() and (corner < 80).any())


def test_the_animator_labels_its_video_by_default(adapter: ModuleType) -> None:
    assert has_label(first_frame(adapter, model_config()))


def test_the_animator_leaves_it_off_when_its_config_says_so(adapter: ModuleType) -> None:
    assert not has_label(first_frame(adapter, model_config(ai_label="off")))


def test_a_bad_label_parameter_stops_the_model_at_load(adapter: ModuleType) -> None:
    with pytest.raises(ValueError, match="ai_label"):
        adapter.TritonPythonModel().initialize(
            {"model_config": json.dumps(model_config(ai_label="sometimes"))}
        )
