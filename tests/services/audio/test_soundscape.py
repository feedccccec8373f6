"""Tests for the procedural soundscape: layer choice, output format, fades and layer character."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from services.audio.soundscape import LAYERS, choose_layers, render

RATE = 48000


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Waves crashing on a quiet beach", ("waves",)),
        ("a windy hilltop", ("wind",)),
        ("A stormy night at sea", ("waves", "wind", "rain")),
        ("birds in the garden", ("birds",)),
        ("Busy city street at night", ("city",)),
        ("a dreamy dance party", ("music",)),
        ("kids dancing in a city park", ("birds", "city", "music")),
        ("rain in the forest, birds near the ocean with wind", ("waves", "rain", "birds")),
        ("SEA, sea, sea!", ("waves",)),
    ],
)
def test_layers_from_prompt(prompt: str, expected: tuple[str, ...]) -> None:
    assert choose_layers(prompt, None) == expected


def test_prompt_words_match_whole_words_only() -> None:
    # "season", "rainbow" and "treat" must not trigger sea, rain or tree.
    assert choose_layers("a rainbow season treat", None) == ("music",)


def test_prompt_wins_over_image() -> None:
    assert choose_layers("rain", _split((135, 190, 235), (20, 80, 150))) == ("rain",)


def _split(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> npt.NDArray[Any]:
    image = np.zeros((240, 160, 3), np.uint8)
    image[:120] = top
    image[120:] = bottom
    return image


def _city_image() -> npt.NDArray[Any]:
    rng = np.random.default_rng(0)
    image = np.full((512, 384, 3), 128, np.uint8)
    for _ in range(80):
        y, x = rng.integers(0, 470), rng.integers(0, 360)
        image[y : y + rng.integers(10, 80), x : x + rng.integers(6, 40)] = rng.integers(40, 220)
    return image


def _fog_image() -> npt.NDArray[Any]:
    rng = np.random.default_rng(0)
    ramp = np.linspace(150, 210, 512)[:, None, None] + rng.normal(0, 5, (512, 384, 3))
    return np.clip(ramp, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (_split((135, 190, 235), (20, 80, 150)), ("waves", "wind")),
        (_split((240, 200, 160), (30, 90, 160)), ("waves",)),
        (_split((110, 170, 240), (60, 140, 50)), ("wind", "birds")),
        (_split((40, 110, 40), (30, 90, 30)), ("birds",)),
        (_city_image(), ("city",)),
        (_fog_image(), ("wind",)),
        (_split((200, 120, 60), (160, 60, 40)), ("music",)),
    ],
    ids=["seascape", "sea", "meadow", "forest", "city", "fog", "sunset"],
)
def test_layers_from_image(image: npt.NDArray[Any], expected: tuple[str, ...]) -> None:
    assert choose_layers("a photo of something", image) == expected
    # Float [0, 1] images give the same answer as uint8 ones.
    assert choose_layers("", image.astype(np.float32) / 255) == expected


def test_no_prompt_words_and_no_image_gives_music() -> None:
    assert choose_layers("", None) == ("music",)


@pytest.fixture(scope="module")
def rendered() -> dict[str, npt.NDArray[Any]]:
    return {layer: render([layer], 3.0, seed=7) for layer in LAYERS}


@pytest.mark.parametrize("layer", LAYERS)
def test_render_format_level_and_fades(rendered: dict[str, npt.NDArray[Any]], layer: str) -> None:
    audio = rendered[layer]
    assert audio.shape == (2, 3 * RATE)
    assert audio.dtype == np.float32
    assert np.isfinite(audio).all()
    peak = float(np.abs(audio).max())
    assert 20 * np.log10(peak) == pytest.approx(-3.0, abs=0.1)
    rms = float(np.sqrt(np.mean(audio**2)))
    assert rms > 0.03, "not silence"
    ten_ms = RATE // 100
    assert np.abs(audio[:, :ten_ms]).max() < 0.01 * peak
    assert np.abs(audio[:, -ten_ms:]).max() < 0.01 * peak
    # Stereo, but not two identical channels.
    assert not np.allclose(audio[0], audio[1])


def test_render_is_deterministic_per_seed() -> None:
    first = render(["rain", "music"], 1.5, seed=3)
    assert np.array_equal(first, render(["rain", "music"], 1.5, seed=3))
    assert not np.array_equal(first, render(["rain", "music"], 1.5, seed=4))


@pytest.mark.parametrize(
    ("duration", "rate", "samples"),
    [(4.0, 48000, 192000), (0.1, 48000, 4800), (1.01, 44100, 44541)],
)
def test_sample_count(duration: float, rate: int, samples: int) -> None:
    audio = render(["waves", "birds"], duration, sample_rate=rate)
    assert audio.shape == (2, samples)
    assert np.isfinite(audio).all()


def _spectrum(audio: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    mono = audio.mean(axis=0)
    return np.fft.rfftfreq(mono.size, 1 / RATE), np.abs(np.fft.rfft(mono)) ** 2


def _centroid(audio: npt.NDArray[Any]) -> float:
    freqs, power = _spectrum(audio)
    return float((freqs * power).sum() / power.sum())


def _band_share(audio: npt.NDArray[Any], low: float, high: float) -> float:
    freqs, power = _spectrum(audio)
    return float(power[(freqs >= low) & (freqs < high)].sum() / power.sum())


def test_layers_differ_spectrally(rendered: dict[str, npt.NDArray[Any]]) -> None:
    centroids = {layer: _centroid(audio) for layer, audio in rendered.items()}
    assert centroids["rain"] > 3 * centroids["waves"]
    assert centroids["rain"] > 3 * centroids["city"]
    assert centroids["music"] < 1000
    assert _band_share(rendered["birds"], 2000, 6000) > 0.6
    for layer in ("waves", "wind", "city", "music"):
        assert _band_share(rendered[layer], 2000, 6000) < 0.2
    assert _band_share(rendered["city"], 20, 300) > _band_share(rendered["rain"], 20, 300)


def test_birds_come_in_bursts(rendered: dict[str, npt.NDArray[Any]]) -> None:
    # Short-time energy in 2-6 kHz: chirps stand far above the quiet gaps between them.
    mono = rendered["birds"].mean(axis=0)
    hop = RATE // 50
    energies = []
    for start in range(0, mono.size - hop, hop):
        block = np.fft.rfft(mono[start : start + hop])
        freqs = np.fft.rfftfreq(hop, 1 / RATE)
        energies.append(float((np.abs(block[(freqs >= 2000) & (freqs < 6000)]) ** 2).sum()))
    loud, quiet = np.percentile(energies, 95), np.percentile(energies, 20)
    assert loud > 30 * quiet


def test_waves_swell_slowly(rendered: dict[str, npt.NDArray[Any]]) -> None:
    mono = rendered["waves"].mean(axis=0)
    middle = mono[RATE // 2 : -RATE // 2]
    envelope = np.sqrt((middle.reshape(-1, RATE // 10) ** 2).mean(axis=1))
    assert envelope.max() > 2 * envelope.min()


@pytest.mark.parametrize(
    ("layers", "duration", "kwargs"),
    [
        ([], 1.0, {}),
        (["thunder"], 1.0, {}),
        (["rain"], 0.0, {}),
        (["rain"], float("nan"), {}),
        (["rain"], 1.0, {"seed": -1}),
        (["rain"], 1.0, {"sample_rate": 1000}),
    ],
)
def test_render_rejects_bad_arguments(
    layers: list[str], duration: float, kwargs: dict[str, int]
) -> None:
    with pytest.raises(ValueError):
        render(layers, duration, **kwargs)
