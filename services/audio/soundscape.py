"""Procedural ambient soundtracks: pick layers from the prompt or image, then synthesise them.

Everything is generated from seeded numpy noise and oscillators (no samples, no model weights),
so the same layers, duration and seed always give the same audio.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

LAYERS = ("waves", "wind", "rain", "birds", "city", "music")

_KEYWORDS: dict[str, frozenset[str]] = {
    "waves": frozenset(
        "sea seas ocean oceans beach beaches wave waves surf surfing shore shoreline coast "
        "coastal tide tides seaside lake harbor harbour island".split()
    ),
    "wind": frozenset(
        "wind winds windy breeze breezy storm storms stormy gust gusts gusty blizzard "
        "mountain mountains desert snow snowy cliff".split()
    ),
    "rain": frozenset(
        "rain rains rainy raining rainfall storm storms stormy drizzle drizzling downpour "
        "thunder thunderstorm umbrella monsoon".split()
    ),
    "birds": frozenset(
        "bird birds forest forests garden gardens park parks tree trees spring woods woodland "
        "meadow meadows jungle flower flowers nature countryside".split()
    ),
    "city": frozenset(
        "city cities street streets traffic urban downtown car cars taxi crowd crowds "
        "skyline avenue metropolis".split()
    ),
    "music": frozenset(
        "music musical dance dancing dancer party dream dreamy dreaming calm song concert "
        "piano guitar peaceful relax relaxing magic magical".split()
    ),
}

_MAX_LAYERS = 3
_PEAK = 10 ** (-3 / 20)  # -3 dBFS
_WIDTH = 0.75  # side-channel scale: keeps the mix wide but mono-compatible
_GAINS = {"waves": 1.0, "wind": 0.8, "rain": 0.75, "birds": 0.45, "city": 0.8, "music": 0.7}

_FloatArray = npt.NDArray[np.float64]


def choose_layers(prompt: str, image: npt.NDArray[Any] | None) -> tuple[str, ...]:
    """Pick 1-3 layers (in LAYERS order) from prompt words, else from an image scene guess."""
    words = re.findall(r"[a-z]+", prompt.lower())
    first_mention: dict[str, int] = {}
    for position, word in enumerate(words):
        for layer, vocabulary in _KEYWORDS.items():
            if word in vocabulary and layer not in first_mention:
                first_mention[layer] = position
    if first_mention:
        # Keep the layers the prompt mentions first; ties (e.g. "storm") follow LAYERS order.
        ranked = sorted(first_mention, key=lambda name: (first_mention[name], LAYERS.index(name)))
        chosen = set(ranked[:_MAX_LAYERS])
        return tuple(name for name in LAYERS if name in chosen)
    if image is None:
        return ("music",)
    return _layers_from_image(image)


def _layers_from_image(image: npt.NDArray[Any]) -> tuple[str, ...]:
    rgb = _as_rgb_unit(image)
    top, bottom = rgb[: rgb.shape[0] // 2], rgb[rgb.shape[0] // 2 :]
    blue_top, blue_bottom = _blue_fraction(top), _blue_fraction(bottom)
    green_all, green_bottom = _green_fraction(rgb), _green_fraction(bottom)
    if blue_bottom > 0.35:
        return ("waves", "wind") if blue_top > 0.3 else ("waves",)
    if green_all > 0.25 or (blue_top > 0.25 and green_bottom > 0.2):
        return ("wind", "birds") if blue_top > 0.25 else ("birds",)
    maximum = rgb.max(axis=2)
    saturation = (maximum - rgb.min(axis=2)) / (maximum + 1e-6)
    if float(saturation.mean()) < 0.15:
        # Grey scenes: busy edges suggest buildings, smooth ones an overcast sky or fog.
        luma = _as_rgb_unit(rgb, 64) @ np.array([0.299, 0.587, 0.114])
        edges = float(np.abs(np.diff(luma, axis=0)).mean() + np.abs(np.diff(luma, axis=1)).mean())
        return ("city",) if edges > 0.03 else ("wind",)
    return ("music",)


def _as_rgb_unit(image: npt.NDArray[Any], size: int = 128) -> _FloatArray:
    """RGB in [0, 1], block-averaged so the longer side is at most about `size` pixels."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] < 3 or array.shape[0] < 2 or array.shape[1] < 2:
        raise ValueError(f"image must be [H, W, 3|4] or [H, W], got shape {np.shape(image)}")
    rgb = array[..., :3].astype(np.float64)
    if np.issubdtype(array.dtype, np.integer) or rgb.max() > 1.0:
        rgb /= 255.0
    # Block means (not striding) keep the guess cheap and average away sensor noise.
    step = max(1, max(rgb.shape[:2]) // size)
    h, w = rgb.shape[0] // step * step, rgb.shape[1] // step * step
    return np.asarray(rgb[:h, :w].reshape(h // step, step, w // step, step, 3).mean(axis=(1, 3)))


def _blue_fraction(rgb: _FloatArray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mask = (b >= g - 0.03) & (b > r + 0.08) & (b > 0.15)
    return float(mask.mean())


def _green_fraction(rgb: _FloatArray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mask = (g > r + 0.04) & (g > b + 0.02) & (g > 0.1)
    return float(mask.mean())


def render(
    layers: Sequence[str], duration_s: float, *, sample_rate: int = 48000, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Synthesise the layers as float32 stereo [2, round(duration_s * sample_rate)].

    The mix is peak-normalised to -3 dBFS with raised-cosine fade-in and fade-out.
    """
    if not layers:
        raise ValueError("at least one layer is required")
    unknown = [name for name in layers if name not in LAYERS]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; expected some of {LAYERS}")
    if not np.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000, got {sample_rate}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n = round(duration_s * sample_rate)
    mix = np.zeros((2, n))
    if n == 0:
        return mix.astype(np.float32)
    for name in dict.fromkeys(layers):
        # A per-layer stream keeps each layer identical whichever others are mixed with it.
        rng = np.random.default_rng([seed, LAYERS.index(name)])
        layer = _SYNTHS[name](rng, n, sample_rate)
        rms = float(np.sqrt(np.mean(layer**2)))
        if rms > 0:
            mix += _GAINS[name] * layer / rms
    mid, side = (mix[0] + mix[1]) / 2, (mix[0] - mix[1]) / 2 * _WIDTH
    mix = np.stack([mid + side, mid - side])
    mix *= _fade_envelope(n, sample_rate, duration_s)
    peak = float(np.abs(mix).max())
    if peak > 0:
        mix *= _PEAK / peak
    return mix.astype(np.float32)


def _fade_envelope(n: int, sample_rate: int, duration_s: float) -> _FloatArray:
    fade = max(1, min(round(min(0.4, 0.12 * duration_s) * sample_rate), n // 2))
    ramp = np.sin(0.5 * np.pi * np.arange(fade) / fade) ** 2
    envelope = np.ones(n)
    envelope[:fade] = ramp
    envelope[n - fade :] = np.minimum(envelope[n - fade :], ramp[::-1])
    return envelope


# --- building blocks -------------------------------------------------------------------------


def _band_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    sample_rate: int,
    low: float,
    high: float,
    tilt: float = 0.0,
) -> _FloatArray:
    """White noise band-limited by a 2nd-order-like FFT response, unit RMS per row.

    `tilt` adds a -3*tilt dB/octave slope (tilt=1 pink-ish, 2 brown-ish) for warmer noise.
    """
    n = shape[-1]
    # White noise's spectrum is complex Gaussian noise: drawn as such, it needs no forward FFT.
    bins = (*shape[:-1], n // 2 + 1)
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 1.0)
    response = _band_response(freqs, low, high) * (freqs / low) ** (-tilt / 2)
    out = np.fft.irfft(spectrum * response, n=n, axis=-1)
    rms = np.sqrt(np.mean(out**2, axis=-1, keepdims=True))
    return np.asarray(out / np.maximum(rms, 1e-12))


def _band_response(freqs: _FloatArray, low: float, high: float) -> _FloatArray:
    """Magnitude of a 2nd-order high-pass at `low` in series with a 2nd-order low-pass at `high`."""
    below, above = np.square(low / freqs), np.square(freqs / high)  # squared again below
    return np.asarray(1 / np.sqrt((1 + below * below) * (1 + above * above)))


def _smooth_random(
    rng: np.random.Generator, n: int, sample_rate: int, rate_hz: float
) -> _FloatArray:
    """Slowly wandering control signal in [0, 1]: random knots joined by smoothstep curves."""
    knots = rng.random(int(np.ceil(n / sample_rate * rate_hz)) + 2)
    position = np.arange(n) / sample_rate * rate_hz
    index = position.astype(int)
    frac = position - index
    frac = frac * frac * (3 - 2 * frac)
    return np.asarray(knots[index] * (1 - frac) + knots[index + 1] * frac)


def _pan(mono: _FloatArray, position: float | _FloatArray) -> _FloatArray:
    """Equal-power pan; position -1 is hard left, +1 hard right."""
    angle = (np.asarray(position) + 1) * np.pi / 4
    return np.stack([mono * np.cos(angle), mono * np.sin(angle)])


def _add_at(buffer: _FloatArray, start: int, sound: _FloatArray) -> None:
    end = min(buffer.shape[-1], start + sound.shape[-1])
    if end > start >= 0:
        buffer[..., start:end] += sound[..., : end - start]


def _delayed(signal: _FloatArray, lag: int) -> _FloatArray:
    """Shift `signal` later by `lag` samples along its last axis, holding its first value."""
    lag = min(lag, signal.shape[-1])
    head = np.repeat(signal[..., :1], lag, axis=-1)
    return np.concatenate([head, signal[..., : signal.shape[-1] - lag]], axis=-1)


def _stereo_noise(
    rng: np.random.Generator,
    n: int,
    sample_rate: int,
    low: float,
    high: float,
    tilt: float,
    spread: float,
) -> _FloatArray:
    """Partially correlated stereo noise: `spread` 0 is mono, 1 fully independent channels."""
    common = _band_noise(rng, (n,), sample_rate, low, high, tilt)
    own = _band_noise(rng, (2, n), sample_rate, low, high, tilt)
    return np.asarray(np.sqrt(1 - spread**2) * common + spread * own)


# --- layers ----------------------------------------------------------------------------------


def _waves(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    t = np.arange(n) / sample_rate
    duration = n / sample_rate
    swell = np.full(n, 0.08)
    start = rng.uniform(-1.5, 0.3)  # a surge is always building at the start of the clip
    while start < duration:
        rise, decay = rng.uniform(1.2, 2.0), rng.uniform(0.9, 1.6)
        since = t - start
        building = (since >= 0) & (since < rise)
        receding = since >= rise
        height = rng.uniform(0.6, 1.0)
        swell[building] += height * np.sin(0.5 * np.pi * since[building] / rise) ** 2
        swell[receding] += height * np.exp(-(since[receding] - rise) / decay)
        start += rng.uniform(3.5, 6.5)
    # The far channel hears each surge a little later, which widens the shoreline.
    envelope = np.stack([swell, _delayed(swell, round(0.15 * sample_rate))])
    body = _stereo_noise(rng, n, sample_rate, 50, 700, 1.2, 0.5)
    # Foam hiss follows the crest slightly later than the low-frequency body.
    crest = _delayed(envelope, round(0.35 * sample_rate))
    foam = _stereo_noise(rng, n, sample_rate, 900, 7000, 0.5, 0.7)
    return np.asarray(body * envelope + 0.45 * foam * crest**2)


def _wind(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    gust = _smooth_random(rng, n, sample_rate, 0.35) ** 1.5
    wander = _smooth_random(rng, n, sample_rate, 0.25)
    # A bank of fixed band-passes crossfaded over time approximates one sweeping band-pass;
    # all bands filter the same white noise, so one forward FFT serves them all.
    centers = np.geomspace(180, 1500, 6)
    where = (len(centers) - 1) * (0.6 * gust + 0.4 * wander)
    white = rng.standard_normal((2, n)) * 0.6 + rng.standard_normal(n) * 0.8
    spectrum = np.fft.rfft(white, axis=-1)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / sample_rate), 1.0)
    whistle = np.zeros((2, n))
    for k, center in enumerate(centers):
        weight = np.exp(-(((k - where) / 0.8) ** 2))
        band = np.fft.irfft(spectrum * _band_response(freqs, center / 1.35, center * 1.35), n)
        whistle += band / max(float(np.sqrt(np.mean(band**2))), 1e-12) * weight
    strength = 0.3 + 0.7 * gust
    rumble = _stereo_noise(rng, n, sample_rate, 25, 160, 1.0, 0.3)
    return np.asarray(whistle * strength + 0.5 * rumble * strength**2)


def _rain(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    nyquist = sample_rate / 2
    hiss = _stereo_noise(rng, n, sample_rate, 1800, min(12000, 0.9 * nyquist), 0.6, 0.9)
    hiss *= 0.85 + 0.15 * _smooth_random(rng, n, sample_rate, 0.5)
    patter = _stereo_noise(rng, n, sample_rate, 300, 1500, 0.5, 0.9)
    # Droplets: a Poisson impulse train per channel convolved with a tiny filtered-noise tick.
    count = rng.poisson(70 * n / sample_rate)
    impulses = np.zeros((2, n))
    positions = rng.integers(0, n, count)
    amplitudes = rng.lognormal(0.0, 0.3, count)
    # add.at, unlike fancy-index +=, accumulates drops that land on the same sample.
    panned = _pan(amplitudes, rng.uniform(-0.9, 0.9, count))
    for channel in range(2):
        np.add.at(impulses[channel], positions, panned[channel])
    tick_len = round(0.02 * sample_rate)
    tick = _band_noise(rng, (tick_len,), sample_rate, 2500, min(9000, 0.9 * nyquist))
    tick *= np.exp(-np.arange(tick_len) / (0.003 * sample_rate))
    size = n + tick_len
    clicks = np.fft.irfft(
        np.fft.rfft(impulses, size, axis=-1) * np.fft.rfft(tick, size), size, axis=-1
    )[:, :n]
    clicks *= 1.5 / max(float(np.sqrt(np.mean(clicks**2))), 1e-12)
    # A few larger drops ring briefly at a pitch, like drips off a roof edge.
    drops = np.zeros((2, n))
    plink_len = round(0.05 * sample_rate)
    plink_t = np.arange(plink_len) / sample_rate
    for _ in range(rng.poisson(4 * n / sample_rate)):
        pitch = rng.uniform(1500, min(4500, 0.4 * sample_rate))
        plink = np.sin(2 * np.pi * pitch * plink_t * (1 + 0.6 * plink_t)) * np.exp(-plink_t / 0.012)
        _add_at(
            drops,
            int(rng.integers(0, n)),
            _pan(plink * rng.uniform(0.5, 1.5), rng.uniform(-0.8, 0.8)),
        )
    return np.asarray(hiss + 0.3 * patter + 0.2 * clicks + 0.3 * drops)


def _birds(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    top = 0.42 * sample_rate
    out = 0.02 * _stereo_noise(rng, n, sample_rate, 2000, min(8000, top), 0.5, 0.9)
    duration = n / sample_rate
    when = rng.uniform(0.0, 0.6)  # the first call comes early so even short clips have one
    while when < duration:
        base = rng.uniform(2500, 4500)
        sweep = rng.uniform(-1200, 1500)
        trill_rate, trill_depth = rng.uniform(15, 45), rng.uniform(0, 600) * (rng.random() < 0.6)
        loudness, position = rng.uniform(0.35, 1.0), rng.uniform(-0.8, 0.8)
        start = when
        for _ in range(int(rng.integers(2, 8))):
            length = rng.uniform(0.04, 0.14)
            t = np.arange(round(length * sample_rate)) / sample_rate
            u = t / length
            freq = base + sweep * u + trill_depth * np.sin(2 * np.pi * trill_rate * t)
            freq = np.clip(freq, 1800, min(7000.0, top))
            phase = 2 * np.pi * np.cumsum(freq) / sample_rate
            voice = np.sin(phase) + 0.12 * np.sin(2 * phase) * (2 * base < top)
            chirp = voice * np.sin(np.pi * u) ** 2 * loudness
            _add_at(out, round(start * sample_rate), _pan(chirp, position))
            start += length + rng.uniform(0.02, 0.09)
            base *= rng.uniform(0.92, 1.08)
        when = start + rng.exponential(0.8) + 0.15
    return np.asarray(out)


def _city(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    t = np.arange(n) / sample_rate
    duration = n / sample_rate
    rumble = _stereo_noise(rng, n, sample_rate, 25, 250, 1.5, 0.2)
    # Passing cars: Gaussian loudness bumps whose pan travels across the stereo field.
    cars = np.full((2, n), 0.15)
    for _ in range(max(1, rng.poisson(0.6 * duration))):
        centre, width = rng.uniform(-0.5, duration + 0.5), rng.uniform(0.6, 1.5)
        direction = rng.choice([-1.0, 1.0])
        bump = rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((t - centre) / width) ** 2)
        cars += _pan(bump, np.clip(direction * (t - centre) / (2 * width), -0.8, 0.8))
    traffic = _stereo_noise(rng, n, sample_rate, 90, 1400, 0.8, 0.6)
    tyres = _stereo_noise(rng, n, sample_rate, 1000, min(4000, 0.4 * sample_rate), 0.5, 0.6)
    out = 0.8 * rumble + cars * (traffic + 0.25 * tyres)
    for _ in range(rng.poisson(0.15 * duration)):
        out += _horn(rng, n, sample_rate)
    return np.asarray(out)


def _horn(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    """A distant two-tone car horn (a major third apart) with a couple of faint echoes."""
    length = rng.uniform(0.25, 0.6)
    t = np.arange(round(length * sample_rate)) / sample_rate
    tone = np.zeros_like(t)
    low = rng.uniform(350, 450)
    for fundamental in (low, low * 1.25):
        for harmonic in range(1, 7):
            if fundamental * harmonic < 0.45 * sample_rate:
                tone += np.sin(2 * np.pi * fundamental * harmonic * t) / harmonic**1.5
    attack, release = round(0.02 * sample_rate), round(0.06 * sample_rate)
    tone[:attack] *= np.linspace(0, 1, attack)
    tone[-release:] *= np.linspace(1, 0, release)
    horn = np.zeros((2, n))
    start, position = int(rng.integers(0, n)), rng.uniform(-0.7, 0.7)
    for delay, gain in ((0.0, 1.0), (0.031, 0.4), (0.057, 0.25)):
        _add_at(horn, start + round(delay * sample_rate), _pan(tone * gain * 0.6, position))
    return horn


_PROGRESSIONS = (
    ((0, 4, 7, 11), (-3, 0, 4, 7), (-7, -3, 0, 4), (-5, -1, 2, 7)),  # Imaj7 vi7 IVmaj7 V
    ((0, 4, 7, 14), (-7, -3, 0, 7), (-3, 0, 4, 11), (-5, 2, 7, 11)),  # I IV vi V, open voicing
    ((-3, 0, 4, 7), (-7, -3, 0, 4), (0, 4, 7, 11), (-5, -1, 2, 5)),  # vi7 IVmaj7 Imaj7 V7
)


def _music(rng: np.random.Generator, n: int, sample_rate: int) -> _FloatArray:
    duration = n / sample_rate
    # A3..E4 roots keep the chords mid-range, with the bass an octave below.
    root = 57 + int(rng.choice([0, 2, 3, 5, 7]))
    progression = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    chord_len = min(4.0, max(2.0, duration / 2))
    overlap = min(1.2, 0.5 * chord_len)  # slow attack/release crossfade between chords
    out = np.zeros((2, n))
    chord_index = 0
    while chord_index * chord_len < duration:
        chord = progression[chord_index % len(progression)]
        begin = max(0.0, chord_index * chord_len - overlap / 2)
        end = min(duration, (chord_index + 1) * chord_len + overlap / 2)
        first, last = round(begin * sample_rate), round(end * sample_rate)
        t = np.arange(first, last) / sample_rate
        envelope = np.ones(last - first)
        ramp = min(round(overlap * sample_rate), len(envelope) // 2)
        if chord_index > 0 and ramp:
            envelope[:ramp] = np.sin(0.5 * np.pi * np.arange(ramp) / ramp) ** 2
        if end < duration and ramp:
            envelope[-ramp:] *= np.cos(0.5 * np.pi * np.arange(ramp) / ramp) ** 2
        notes = [root + offset for offset in chord] + [root + chord[0] - 12]
        for note_number, note in enumerate(notes):
            freq = 440.0 * 2 ** ((note - 69) / 12)
            level = 0.7 if note_number == len(notes) - 1 else 1.0 / (1 + 0.15 * note_number)
            for detune, position in ((-6.0, -0.6), (0.0, 0.0), (6.0, 0.6)):
                phase = 2 * np.pi * freq * 2 ** (detune / 1200) * t + rng.uniform(0, 2 * np.pi)
                # Sine plus a soft, band-limited triangle component for warmth.
                voice = np.sin(phase) + 0.3 * (np.sin(phase) - np.sin(3 * phase) / 9)
                out[:, first:last] += _pan(voice * envelope * level, position)
        chord_index += 1
    breathing = 1 + 0.1 * np.sin(2 * np.pi * 0.2 * np.arange(n) / sample_rate)
    return np.asarray(out * breathing)


_SYNTHS: dict[str, Callable[[np.random.Generator, int, int], _FloatArray]] = {
    "waves": _waves,
    "wind": _wind,
    "rain": _rain,
    "birds": _birds,
    "city": _city,
    "music": _music,
}
