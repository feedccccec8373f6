"""The procedural animator (models/alive_animator/1/), without Triton, through the adapter
module the python backend loads."""

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "alive_animator"


def _load_model() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "alive_animator_model", MODEL_DIR / "1" / "model.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


model = _load_model()


def landscape(height: int = 112, width: int = 64, seed: int = 0) -> np.ndarray:
    """A gradient sky over textured ground with a few darker blocks, like trees."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    sky = y < 0.45
    channels = (
        np.where(sky, 110 + 90 * y, 60 + 40 * np.sin(x * 20) ** 2),
        np.where(sky, 160 + 60 * y, 110 + 30 * np.cos(x * 13 + y * 7)),
        np.where(sky, 235 - 20 * y, 50 + 10 * y),
    )
    image = np.stack(np.broadcast_arrays(*channels), axis=2)
    image += rng.normal(0, 18, (height, width, 1)) * ~sky[..., None]
    for centre in (0.2, 0.5, 0.8):
        trees = (np.abs(x - centre) < 0.06) & (y > 0.35) & (y < 0.6)
        image[trees] = image[trees] * 0.4 + np.array([30, 90, 40]) * 0.6
    return np.clip(image, 0, 255).astype(np.uint8)


def animate(prompt: str = "a quiet valley", seed: int = 1, frames: int = 9, fps: int = 8, **kw):
    return model.animate(kw.get("image", landscape()), prompt, seed, frames, fps)


def red_minus_blue(frame: np.ndarray) -> float:
    return float(frame[..., 0].astype(np.float64).mean() - frame[..., 2].astype(np.float64).mean())


def horizontal_shift(before: np.ndarray, after: np.ndarray, max_shift: int = 12) -> int:
    """The whole-pixel shift that best maps ``before`` onto ``after`` (+ = content moved right)."""
    a, b = before.astype(np.float64), after.astype(np.float64)
    errors = {
        s: np.abs(
            a[:, max_shift - s : a.shape[1] - max_shift - s] - b[:, max_shift:-max_shift]
        ).mean()
        for s in range(-max_shift, max_shift + 1)
    }
    return min(errors, key=errors.__getitem__)


def test_shape_dtype_and_version() -> None:
    frames = animate(frames=9)
    assert frames.shape == (9, 112, 64, 3)
    assert frames.dtype == np.uint8
    assert isinstance(model.MODEL_VERSION, str)
    assert f'string_value: "{model.MODEL_VERSION}"' in (MODEL_DIR / "config.pbtxt").read_text()


def test_deterministic_per_seed() -> None:
    assert np.array_equal(animate(seed=5), animate(seed=5))
    assert not np.array_equal(animate(seed=5), animate(seed=6))


def test_first_frame_is_the_photo() -> None:
    image = landscape()
    frames = animate(image=image)
    assert np.abs(frames[0].astype(int) - image).mean() < 1.0


def test_consecutive_frames_move_smoothly() -> None:
    frames = animate(frames=24, fps=12).astype(np.int16)
    steps = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    assert (steps > 0.05).all(), steps  # never a still frame
    assert (steps < 12).all(), steps  # noise between frames would be ~80


def test_motion_is_defined_per_second() -> None:
    # Frame 8 at 8 fps and frame 16 at 16 fps are both t = 1 s.
    assert np.array_equal(animate(frames=9, fps=8)[8], animate(frames=17, fps=16)[16])


def test_warm_and_cool_words_shift_the_light() -> None:
    def warming(prompt: str) -> float:
        frames = animate(prompt, frames=24, fps=8)
        return red_minus_blue(frames[-1]) - red_minus_blue(frames[0])

    neutral = warming("a quiet valley")
    assert warming("a warm sunset") > neutral + 5
    assert warming("night under the moon") < neutral - 5


def test_zoom_spreads_content_out_and_pan_left_moves_it_right() -> None:
    image = landscape(160, 256)
    ground = slice(100, 150)  # textured rows, so shifts are measurable

    def shifts(prompt: str) -> tuple[int, int]:
        frames = model.animate(image, prompt, 3, 25, 8)
        first, last = frames[0, ground], frames[-1, ground]
        half = image.shape[1] // 2
        return (
            horizontal_shift(first[:, :half], last[:, :half]),
            horizontal_shift(first[:, half:], last[:, half:]),
        )

    left_half, right_half = shifts("zoom in closer")
    assert left_half < 0 < right_half
    left_half, right_half = shifts("pan left")
    assert left_half > 0 and right_half > 0


def test_water_and_wind_add_local_motion() -> None:
    still = animate("a quiet valley", frames=12)
    for prompt in ("a quiet valley by the sea", "wind in a quiet valley"):
        moving = animate(prompt, frames=12)
        assert np.abs(moving[-1].astype(int) - still[-1]).mean() > 0.3, prompt


def test_calm_moves_less() -> None:
    def travel(prompt: str) -> float:
        frames = animate(prompt, frames=16).astype(np.int16)
        return float(np.abs(frames[-1] - frames[0]).mean())

    assert travel("calm zoom") < travel("zoom")


def test_small_and_tall_images() -> None:
    for height, width in ((16, 16), (112, 64), (64, 112)):
        frames = model.animate(landscape(height, width), "clouds", 0, 9, 24)
        assert frames.shape == (9, height, width, 3)


@pytest.mark.parametrize(
    ("image", "num_frames", "fps", "message"),
    [
        (np.zeros((8, 64, 3), np.uint8), 9, 8, "IMAGE sides"),
        (np.zeros((64, 64), np.uint8), 9, 8, "IMAGE must be"),
        (np.zeros((64, 64, 3), np.float32), 9, 8, "IMAGE must be"),
        (np.zeros((64, 64, 3), np.uint8), 0, 8, "NUM_FRAMES"),
        (np.zeros((64, 64, 3), np.uint8), 601, 8, "NUM_FRAMES"),
        (np.zeros((64, 64, 3), np.uint8), 9, 61, "FPS"),
    ],
)
def test_bad_input_is_refused(image: np.ndarray, num_frames: int, fps: int, message: str) -> None:
    with pytest.raises(model.InvalidInput, match=message):
        model.animate(image, "x", 0, num_frames, fps)


def test_read_batch_decodes_and_validates() -> None:
    image = np.zeros((2, 32, 32, 3), np.uint8)
    prompt = np.array([[b"clouds"], [b"wind"]], dtype=np.object_)
    seed = np.array([[1], [2]], np.int64)
    jobs = model.read_batch(
        image, prompt, seed, np.array([[9], [9]], np.int32), np.array([[8], [8]], np.int32)
    )
    assert [(job.prompt, job.seed, job.num_frames) for job in jobs] == [
        ("clouds", 1, 9),
        ("wind", 2, 9),
    ]
    with pytest.raises(model.InvalidInput, match="same for every item"):
        model.read_batch(
            image, prompt, seed, np.array([[9], [10]], np.int32), np.array([[8], [8]], np.int32)
        )
