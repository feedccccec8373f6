"""The animator's parts one by one: the prompt vocabulary, the scene analysis, the one
validation path, and the Triton adapter (tensor names from the model config, per-request
errors) against a stand-in for triton_python_backend_utils."""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2

from alive.media import probe_mp4_bytes, read_frames
from tests.models.backend_stand_in import BACKEND_UTILS, Request, TritonError

VERSION_DIR = Path(__file__).resolve().parents[2] / "models" / "alive_animator" / "1"
sys.path.insert(0, str(VERSION_DIR))  # as Triton's python backend sees the model's modules

import animator_render  # noqa: E402
import animator_requests  # noqa: E402
import animator_scene  # noqa: E402
import animator_vocabulary  # noqa: E402

from tests.models.test_animator import landscape  # noqa: E402


def test_words_steer_the_plan_and_the_seed_alone_does_not_change_with_words() -> None:
    plain = animator_vocabulary.plan_motion("a valley", seed=5)
    assert plain.grade == "" and plain.rain == 0 and not plain.wink and plain.effects == set()
    assert animator_vocabulary.plan_motion("a golden sunset", seed=5).grade == "sunset"
    assert animator_vocabulary.plan_motion("moonlit night", seed=5).grade == "night"
    assert animator_vocabulary.plan_motion("waves on the lake", seed=5).ripple > plain.ripple
    assert animator_vocabulary.plan_motion("a windy day", seed=5).wind > plain.wind
    calm = animator_vocabulary.plan_motion("calm valley", seed=5)
    assert calm.parallax < plain.parallax and calm.noise_seed == plain.noise_seed
    pulled = animator_vocabulary.plan_motion("slowly pull back", seed=5)
    assert pulled.zoom[0] > pulled.zoom[1]


@pytest.mark.parametrize(
    ("prompt", "effects"),
    [
        ("Make it RAIN", {"rain"}),
        ("Regen und Nebel", {"rain", "fog"}),
        ("il pleut, coucher de soleil", {"rain", "sunset"}),
        ("nieve y estrellas", {"snow", "stars"}),
        ("un occhiolino e un sorriso", {"wink", "smile"}),
        ("animate this selfie to wink and smile", {"wink", "smile"}),
        ("golden hour over the sea", {"sunset", "water"}),
        ("sunbeams through the trees, windy", {"light_rays", "wind"}),
        ("sparkles", {"sparkles"}),
        ("clouds in the sky", {"clouds"}),
        ("Schnee fällt bei Nacht", {"snow", "night"}),
        ("qwerty zxcv", set()),  # unknown words: the default motion
        ("rainbow sundae", set()),  # whole words only: no rain, no sun
    ],
)
def test_the_vocabulary_maps_words_and_phrases_in_several_languages(
    prompt: str, effects: set[str]
) -> None:
    assert set(animator_vocabulary.select_effects(prompt)) == effects


def test_every_effect_has_words_and_no_word_belongs_to_two_effects() -> None:
    seen: dict[str, str] = {}
    for effect, phrases in animator_vocabulary.VOCABULARY.items():
        assert phrases, effect
        for phrase in phrases:
            assert seen.setdefault(phrase, effect) == effect, phrase


def test_the_sky_is_found_above_the_ground_of_a_landscape() -> None:
    scene = animator_scene.analyse(landscape(height=112, width=64))
    sky = scene.maps[..., animator_scene.SKY]
    rows = sky.shape[0]
    assert sky[: rows // 5].mean() > 0.5 and sky[-rows // 5 :].mean() == 0.0
    assert 0.2 < scene.horizon < 0.7
    depth = scene.maps[..., animator_scene.DEPTH]
    assert depth[-1].mean() > depth[0].mean()  # the ground is nearer than the sky


@pytest.mark.parametrize(
    ("image", "num_frames", "fps"),
    [
        (np.zeros((64, 64, 3), np.float32), 9, 8),
        (np.zeros((64, 64, 4), np.uint8), 9, 8),
        (np.zeros((8, 64, 3), np.uint8), 9, 8),
        (np.zeros((64, 64, 3), np.uint8), 0, 8),
        (np.zeros((64, 64, 3), np.uint8), 9, 61),
    ],
)
def test_requests_are_refused_exactly_as_animate_refuses_their_items(
    image: np.ndarray, num_frames: int, fps: int
) -> None:
    with pytest.raises(animator_render.InvalidInput) as by_animate:
        animator_render.animate(image, "x", 0, num_frames, fps)
    with pytest.raises(animator_render.InvalidInput) as by_request:
        animator_requests.read_batch(**batch_of(image, num_frames=num_frames, fps=fps))
    assert str(by_request.value) == str(by_animate.value)


def test_a_request_without_a_batch_dimension_is_refused() -> None:
    arrays = batch_of(np.zeros((32, 32, 3), np.uint8))
    arrays["image"] = arrays["image"][0]
    with pytest.raises(animator_render.InvalidInput, match=r"IMAGE must be \[batch, H, W, 3\]"):
        animator_requests.read_batch(**arrays)


# The adapter, against a stand-in for the module Triton's python backend provides.


@pytest.fixture
def adapter(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """model.py, loaded by path as the backend loads it, with the backend's utilities faked."""
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", BACKEND_UTILS)
    spec = importlib.util.spec_from_file_location(
        "alive_animator_adapter", VERSION_DIR / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def model_config() -> dict[str, Any]:
    """config.pbtxt as the JSON Triton passes to initialize (proto field names)."""
    parsed = text_format.Parse(
        (VERSION_DIR.parent / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return json_format.MessageToDict(parsed, preserving_proto_field_name=True)


def batch_of(
    image: np.ndarray,
    prompt: str = "clouds",
    seed: int = 3,
    num_frames: int = 4,
    fps: int = 8,
    size: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """read_batch's arguments for a batch of one item, shaped as Triton hands them over;
    ``size`` (width, height) of the frame, or None to leave the optional inputs out."""
    arrays = {
        "image": image[np.newaxis],
        "prompt": np.array([[prompt.encode()]], dtype=np.object_),
        "seed": np.array([[seed]], np.int64),
        "num_frames": np.array([[num_frames]], np.int32),
        "fps": np.array([[fps]], np.int32),
    }
    if size is not None:
        arrays["width"] = np.array([[size[0]]], np.int32)
        arrays["height"] = np.array([[size[1]]], np.int32)
    return arrays


def started(adapter: ModuleType, config: dict[str, Any]) -> Any:
    model = adapter.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    return model


def request_for(
    config: dict[str, Any], outputs: tuple[str, ...] | None = None, **item: Any
) -> Request:
    """A request carrying ``batch_of(**item)`` under the input names ``config`` declares,
    asking for ``outputs`` (default: every output the config declares)."""
    arrays = batch_of(**item)
    inputs = {
        tensor["name"]: arrays[tensor["name"].lower()]
        for tensor in config["input"]
        if tensor["name"].lower() in arrays
    }
    asked = outputs or tuple(tensor["name"] for tensor in config["output"])
    return Request(inputs, asked)


@pytest.mark.parametrize("renamed", [False, True])
def test_the_adapter_uses_the_tensor_names_the_config_declares(
    adapter: ModuleType, renamed: bool
) -> None:
    config = model_config()
    if renamed:  # any case of read_batch's names for the inputs, any names for the outputs
        for tensor in config["input"]:
            tensor["name"] = tensor["name"].lower()
        for tensor in config["output"]:
            tensor["name"] = f"OUT_{tensor['name']}"
    video_name, frames_name = (f"OUT_{n}" if renamed else n for n in ("VIDEO", "FRAMES"))
    image = landscape(48, 32)
    (response,) = started(adapter, config).execute([request_for(config, image=image)])
    assert response.error is None
    tensors = {tensor.name: tensor.array for tensor in response.output_tensors}
    expected = animator_render.animate(image, "clouds", 3, 4, 8)
    assert np.array_equal(tensors[frames_name][0], expected)
    video = probe_mp4_bytes(tensors[video_name][0, 0])
    assert (video.frame_count, video.width, video.height) == (4, 32, 48)


def test_only_the_encoded_video_is_sent_unless_the_frames_are_asked_for(
    adapter: ModuleType,
) -> None:
    """The raw frames (170 MB at the default size) never leave the model unless asked for."""
    config = model_config()
    image = landscape(48, 32)
    request = request_for(config, outputs=("VIDEO",), image=image, num_frames=12)
    (response,) = started(adapter, config).execute([request])
    (tensor,) = response.output_tensors
    assert tensor.name == "VIDEO" and tensor.array.shape == (1, 1)
    data = tensor.array[0, 0]
    assert len(data) < expected_raw_bytes(12, 48, 32) and data[4:8] == b"ftyp"
    first = read_frames_bytes(data)[0].astype(int)
    original = animator_render.animate(image, "clouds", 3, 12, 8)[0].astype(int)
    # H.264 at crf 23: close, not exact; below the visible AI label in the top corner.
    assert np.abs(first[24:] - original[24:]).mean() < 12


def expected_raw_bytes(frames: int, height: int, width: int) -> int:
    return frames * height * width * 3


def read_frames_bytes(data: bytes) -> np.ndarray:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "v.mp4"
        path.write_bytes(data)
        return read_frames(path)


def test_a_bad_request_gets_a_clear_error_and_the_others_in_its_batch_are_served(
    adapter: ModuleType,
) -> None:
    config = model_config()
    image = landscape(48, 32)
    bad_length = request_for(config, image=image, num_frames=0)
    bad_photo = request_for(config, image=image.astype(np.float32))
    good = request_for(config, image=image)
    responses = started(adapter, config).execute([bad_length, bad_photo, good])
    errors = [response.error for response in responses[:2]]
    assert [error.code for error in errors] == [TritonError.INVALID_ARG] * 2
    assert errors[0].message == "NUM_FRAMES must be 1..600, got 0"
    assert errors[1].message.startswith("IMAGE must be uint8 H x W x 3, got float32")
    assert responses[2].error is None
    frames = next(t for t in responses[2].output_tensors if t.name == "FRAMES")
    assert frames.array.shape[1] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda config: config["input"][0].update(name="PHOTO"), "do not match"),
        (lambda config: config["output"].append({"name": "AUDIO"}), "two outputs"),
        (lambda config: config["output"].pop(0), "two outputs"),
        (
            lambda config: config["parameters"]["model_version"].update(string_value="other"),
            "model_version",
        ),
        (
            lambda config: config["parameters"]["framing"].update(string_value="letterbox"),
            "framing",
        ),
    ],
)
def test_a_config_the_code_cannot_serve_stops_the_model_at_load(
    adapter: ModuleType, change: Any, message: str
) -> None:
    config = model_config()
    change(config)
    with pytest.raises(ValueError, match=message):
        started(adapter, config)


def test_a_request_with_a_frame_size_gets_frames_of_that_size(adapter: ModuleType) -> None:
    config = model_config()
    request = request_for(config, outputs=("FRAMES",), image=landscape(64, 112), size=(48, 96))
    (response,) = started(adapter, config).execute([request])
    assert response.error is None
    assert response.output_tensors[0].array.shape == (1, 4, 96, 48, 3)
    mixed = batch_of(np.zeros((32, 32, 3), np.uint8), size=(48, 96))
    mixed = {k: np.concatenate([v, v]) for k, v in mixed.items()}
    mixed["width"][1] = 64
    with pytest.raises(animator_render.InvalidInput, match="WIDTH and HEIGHT must be the same"):
        animator_requests.read_batch(**mixed)


def test_docs_show_the_vocabulary_as_the_code_has_it() -> None:
    page = (VERSION_DIR.parents[2] / "docs" / "animator.md").read_text()
    assert animator_vocabulary.markdown_table() in page


def test_people_are_told_what_a_prompt_selected() -> None:
    assert animator_vocabulary.describe("golden hour, make it rain").startswith("rain, sunset")
    assert animator_vocabulary.describe("qwerty").startswith("default motion")


def test_a_subject_that_is_not_a_person_is_separated_from_its_background() -> None:
    """A furry brown blob (an animal, say) in the middle of a green and blue scene."""
    rng = np.random.default_rng(3)
    height, width = 240, 320
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    photo = np.stack([40 + 0 * x, 120 + 60 * y / height, 180 - 80 * y / height], axis=2)
    body = ((x - 160) / 70) ** 2 + ((y - 130) / 60) ** 2 < 1
    photo[body] = [120, 75, 40]
    photo += rng.normal(0, 10, photo.shape)
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    scene = animator_scene.analyse(photo)
    grid = scene.maps[..., animator_scene.SUBJECT] > 0.5
    small_body = cv2.resize(body.astype(np.uint8), grid.shape[::-1]) > 0
    overlap = (grid & small_body).sum() / max((grid | small_body).sum(), 1)
    assert overlap > 0.7, overlap
