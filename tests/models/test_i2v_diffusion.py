"""The i2v_diffusion model's real code path on CPU: a tiny, randomly initialised LTX-Video
pipeline built in code, saved as a pipeline folder and loaded by the model exactly as it
loads real weights, through the adapter the python backend runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from PIL import Image
from tritonclient.grpc import model_config_pb2

from alive.media import probe_mp4_bytes
from alive_tools.tiny_diffusion import build_tiny_ltx
from tests.models.backend_stand_in import BACKEND_UTILS, Request, Response, TritonError

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "i2v_diffusion"


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_ltx(tmp_path_factory.mktemp("weights") / "tiny-ltx")


@pytest.fixture(scope="module")
def model(weights: Path) -> Any:
    saved = sys.modules.get("triton_python_backend_utils")
    sys.modules["triton_python_backend_utils"] = BACKEND_UTILS  # type: ignore[assignment]
    try:
        spec = importlib.util.spec_from_file_location("i2v_model", MODEL_DIR / "1" / "model.py")
        assert spec is not None and spec.loader is not None
        adapter: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(adapter)
        instance = adapter.TritonPythonModel()
        instance.initialize({"model_config": json.dumps(config_with(weights))})
    finally:
        if saved is None:
            sys.modules.pop("triton_python_backend_utils", None)
        else:
            sys.modules["triton_python_backend_utils"] = saved
    return instance


def config_with(weights: Path | str) -> dict[str, Any]:
    """config.pbtxt as Triton passes it to initialize, with the weights path set."""
    parsed = text_format.Parse(
        (MODEL_DIR / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    config = json_format.MessageToDict(parsed, preserving_proto_field_name=True)
    config["parameters"]["weights_path"]["string_value"] = str(weights)
    return config


def photo(seed: int, height: int = 64, width: int = 64) -> np.ndarray:
    """Coloured blocks, scaled up: a photo with structure the VAE can see."""
    blocks = np.random.default_rng(seed).integers(0, 255, (8, 8, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST))


def request(
    image: np.ndarray,
    prompt: str = "clouds over the sea",
    seed: int = 1,
    num_frames: int = 9,
    **options: Any,
) -> Request:
    tensors = {
        "IMAGE": image[np.newaxis],
        "PROMPT": np.array([[prompt.encode()]], dtype=np.object_),
        "NEGATIVE_PROMPT": np.array([[b""]], dtype=np.object_),
        "SEED": np.array([[seed]], np.int64),
        "NUM_FRAMES": np.array([[num_frames]], np.int32),
        "FPS": np.array([[8]], np.int32),
        "STEPS": np.array([[options.get("steps", 2)]], np.int32),
        "GUIDANCE": np.array([[3.0]], np.float32),
    }
    return Request(
        tensors, options.get("outputs", ("VIDEO", "FRAMES")), options.get("cancelled", False)
    )


def answer(model: Any, requests: list[Request]) -> list[Response]:
    """Runs the decoupled model on a batch; each request's final response."""
    assert model.execute(requests) is None  # decoupled: responses go through the senders
    finals = [r.sender.final for r in requests]
    assert all(final is not None for final in finals), "a request without its final response"
    return finals  # type: ignore[return-value]


def frames_of(response: Response) -> np.ndarray:
    assert response.error is None, response.error and response.error.message
    return next(t.array for t in response.output_tensors if t.name == "FRAMES")[0]


def test_the_answer_is_an_encoded_video_of_the_asked_frames_and_size(model: Any) -> None:
    """12 frames of 80x48: generated as 17 frames of 96x64 (what LTX takes), then cut and
    scaled to what was asked; only the MP4 is sent unless the frames are asked for."""
    (response,) = answer(model, [request(photo(3, 48, 80), num_frames=12, outputs=("VIDEO",))])
    assert response.error is None
    (tensor,) = response.output_tensors
    assert tensor.name == "VIDEO"
    info = probe_mp4_bytes(tensor.array[0, 0])
    assert (info.frame_count, info.width, info.height) == (12, 80, 48)


def test_a_seed_gives_the_same_video_and_seeds_prompts_and_photos_change_it(model: Any) -> None:
    base = frames_of(answer(model, [request(photo(1))])[0])
    assert np.array_equal(base, frames_of(answer(model, [request(photo(1))])[0]))
    for changed in (request(photo(1), seed=2), request(photo(1), prompt="a cat at night")):
        assert not np.array_equal(base, frames_of(answer(model, [changed])[0]))
    other_photo = frames_of(answer(model, [request(photo(2))])[0])
    assert np.abs(other_photo[0].astype(int) - base[0].astype(int)).mean() > 1.0


def test_requests_batched_together_run_in_one_pipeline_call_and_match_alone(model: Any) -> None:
    alone = [frames_of(answer(model, [request(photo(s), seed=s)])[0]) for s in (4, 5, 6)]
    calls = []
    original = model.pipeline.pipe.__class__.__call__

    def counting(pipe: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["prompt"]))
        return original(pipe, *args, **kwargs)

    model.pipeline.pipe.__class__.__call__ = counting
    try:
        together = answer(model, [request(photo(s), seed=s) for s in (4, 5, 6)])
    finally:
        model.pipeline.pipe.__class__.__call__ = original
    assert calls == [3]  # one call for the three requests
    for response, single in zip(together, alone, strict=True):
        assert np.abs(frames_of(response).astype(int) - single.astype(int)).max() <= 1


def test_a_bad_or_cancelled_request_fails_alone(model: Any) -> None:
    bad = request(photo(1), num_frames=0)
    cancelled = request(photo(1), cancelled=True)
    good = request(photo(1))
    responses = answer(model, [bad, cancelled, good])
    assert responses[0].error.code == TritonError.INVALID_ARG
    assert responses[0].error.message == "NUM_FRAMES must be 1..257, got 0"
    assert responses[1].error.code == TritonError.CANCELLED
    assert frames_of(responses[2]).shape == (9, 64, 64, 3)


def test_each_request_that_asks_hears_every_denoising_step_before_its_answer(model: Any) -> None:
    """Two requests batched in one call, three steps: the one that asked for the progress
    output gets [1, 3], [2, 3], [3, 3] before its video; the other only its video."""
    asking = request(photo(1), steps=3, outputs=("VIDEO", "PROGRESS"))
    silent = request(photo(2), steps=3, outputs=("VIDEO",))
    answer(model, [asking, silent])
    reports = [r.output_tensors[0] for r in asking.sender.sent]
    assert [t.name for t in reports] == ["PROGRESS"] * 3
    assert [t.array.tolist() for t in reports] == [[[1, 3]], [[2, 3]], [[3, 3]]]
    assert silent.sender.sent == []
    for final in (asking.sender.final, silent.sender.final):
        assert final is not None and final.error is None
        assert [t.name for t in final.output_tensors] == ["VIDEO"]


def test_without_weights_the_model_refuses_to_load_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", SimpleNamespace())
    spec = importlib.util.spec_from_file_location("i2v_model_2", MODEL_DIR / "1" / "model.py")
    assert spec is not None and spec.loader is not None
    adapter = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(adapter)
    for weights, message in (("", "weights_path"), (tmp_path / "absent", "no pipeline folder")):
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            adapter.TritonPythonModel().initialize(
                {"model_config": json.dumps(config_with(weights))}
            )
