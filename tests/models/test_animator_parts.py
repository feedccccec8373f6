"""The animator's parts one by one: the prompt vocabulary, the scene analysis, request
decoding with its one validation path, and the adapter's tensor names from config.pbtxt."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

VERSION_DIR = Path(__file__).resolve().parents[2] / "models" / "alive_animator" / "1"
sys.path.insert(0, str(VERSION_DIR))  # as Triton's python backend sees the model's modules

import animator_render  # noqa: E402
import animator_requests  # noqa: E402
import animator_scene  # noqa: E402
import animator_vocabulary  # noqa: E402

from tests.models.test_animator import landscape  # noqa: E402


def _adapter() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "alive_animator_adapter", VERSION_DIR / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_words_steer_the_motion_plan_and_the_seed_alone_does_not_change_with_words() -> None:
    plain = animator_vocabulary.plan_motion("a valley", seed=5)
    assert plain.warmth == 0 and plain.ripple == 0 and plain.sway == 0
    assert animator_vocabulary.plan_motion("a golden sunset", seed=5).warmth == 1.0
    assert animator_vocabulary.plan_motion("moonlit night", seed=5).warmth == -1.0
    assert animator_vocabulary.plan_motion("waves on the lake", seed=5).ripple > 0
    assert animator_vocabulary.plan_motion("a windy day", seed=5).sway > 0
    calm = animator_vocabulary.plan_motion("calm valley", seed=5)
    assert calm.zoom < plain.zoom and calm.noise_seed == plain.noise_seed
    pulled = animator_vocabulary.plan_motion("slowly pull back", seed=5)
    assert pulled.zoom_out and pulled.pan == (0.0, 0.0)


def test_the_sky_is_found_above_the_ground_of_a_landscape() -> None:
    scene = animator_scene.analyse(landscape(height=112, width=64))
    top, bottom = scene.sky[: scene.sky_rows // 2].mean(), scene.sky[-20:].mean()
    assert top > 0.5 and bottom == 0.0
    assert 0.2 < scene.horizon < 0.7
    assert scene.depth[-1].mean() > scene.depth[0].mean()  # the ground is nearer than the sky


def test_one_validation_path_for_the_model_and_for_requests() -> None:
    with pytest.raises(animator_render.InvalidInput, match="NUM_FRAMES"):
        animator_render.check_request(64, 64, 0, 12)
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    seeds, prompts = np.array([[1], [2]]), np.array([[b"a"], [b"b"]], dtype=np.object_)
    with pytest.raises(animator_render.InvalidInput, match=r"FPS must be 1\.\.60"):
        animator_requests.read_batch(
            batch, prompts, seeds, np.array([[4], [4]]), np.array([[0], [8]])
        )
    with pytest.raises(animator_render.InvalidInput, match="IMAGE sides"):
        animator_render.animate(np.zeros((8, 64, 3), np.uint8), "", 1, 2, 8)


def test_the_adapter_takes_tensor_names_from_the_model_config() -> None:
    pbtxt = (VERSION_DIR.parent / "config.pbtxt").read_text()
    declared = re.findall(r'name:\s*"([A-Z_]+)"', pbtxt)
    config = {
        "input": [{"name": n} for n in declared[:-1]],
        "output": [{"name": declared[-1]}],
    }
    inputs, output = _adapter().tensor_names(config)
    assert inputs == ["IMAGE", "PROMPT", "SEED", "NUM_FRAMES", "FPS"] and output == "FRAMES"
    # read_batch takes exactly the declared inputs, lower-cased.
    names = animator_requests.read_batch.__code__.co_varnames[: len(inputs)]
    assert list(names) == [n.lower() for n in inputs]
