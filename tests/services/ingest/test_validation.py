"""Ingest's validation path: photos, prompts and output specs."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from alive.jobs import DEFAULT_PROMPT
from alive.limits import JobLimits
from alive.v1.events_pb2 import OutputSpec
from services.ingest.settings import IngestSettings
from services.ingest.validation import (
    InvalidInput,
    normalise_prompt,
    resolve_output,
    validate_photo,
)
from tests.support import photo_bytes

SETTINGS = IngestSettings()
LIMITS = JobLimits()


def _reason(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidInput) as err:
        call()
    return err.value.reason_code


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepted_formats_are_normalised_to_png(fmt: str) -> None:
    photo = validate_photo(photo_bytes(fmt=fmt), SETTINGS, LIMITS)
    assert photo.source_format == fmt
    assert (photo.width, photo.height) == (160, 120)
    assert Image.open(io.BytesIO(photo.png)).format == "PNG"


def test_exif_orientation_is_applied_and_exif_dropped() -> None:
    image = Image.open(io.BytesIO(photo_bytes(width=200, height=100)))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "SecretCam"  # Make: metadata that must not survive
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    photo = validate_photo(out.getvalue(), SETTINGS, LIMITS)
    assert (photo.width, photo.height) == (100, 200)
    assert b"SecretCam" not in photo.png


def test_bad_photos_get_reason_codes() -> None:
    def check(data: bytes, settings: IngestSettings) -> object:
        return validate_photo(data, settings, LIMITS)

    gif = io.BytesIO()
    Image.new("RGB", (100, 100)).save(gif, format="GIF")
    bomb = io.BytesIO()
    Image.new("L", (8000, 6000)).save(bomb, format="PNG")
    truncated = photo_bytes(fmt="PNG")[:300]
    jpeg = photo_bytes(width=640, height=480)
    cut_jpeg = jpeg[: len(jpeg) // 2]  # its compressed data ends half way
    assert _reason(lambda: check(b"", SETTINGS)) == "PHOTO_EMPTY"
    assert _reason(lambda: check(b"hello", SETTINGS)) == "PHOTO_UNDECODABLE"
    assert _reason(lambda: check(gif.getvalue(), SETTINGS)) == "PHOTO_UNSUPPORTED_FORMAT"
    assert _reason(lambda: check(bomb.getvalue(), SETTINGS)) == "PHOTO_TOO_MANY_PIXELS"
    assert _reason(lambda: check(truncated, SETTINGS)) == "PHOTO_UNDECODABLE"
    assert _reason(lambda: check(cut_jpeg, SETTINGS)) == "PHOTO_UNDECODABLE"
    tiny = photo_bytes(width=40, height=40)
    assert _reason(lambda: check(tiny, SETTINGS)) == "PHOTO_TOO_SMALL"
    small_limit = IngestSettings(max_photo_bytes=1000)
    assert _reason(lambda: check(photo_bytes(), small_limit)) == "PHOTO_TOO_LARGE"
    check(jpeg, SETTINGS)  # the whole of it passes


def test_prompts_are_normalised_or_rejected() -> None:
    assert normalise_prompt("", SETTINGS) == DEFAULT_PROMPT
    assert normalise_prompt("  \n ", SETTINGS) == DEFAULT_PROMPT
    assert normalise_prompt("waves\n  at\tdusk 🌊", SETTINGS) == "waves at dusk 🌊"
    assert normalise_prompt("cafe\u0301", SETTINGS) == "caf\u00e9"  # NFC
    assert _reason(lambda: normalise_prompt("a\x00b", SETTINGS)) == "PROMPT_CONTROL_CHARACTERS"
    assert _reason(lambda: normalise_prompt("abc\u202egnp", SETTINGS)) == (
        "PROMPT_CONTROL_CHARACTERS"
    )
    assert _reason(lambda: normalise_prompt("x" * 501, SETTINGS)) == "PROMPT_TOO_LONG"


def test_a_huge_prompt_is_refused_by_its_byte_length_before_any_work() -> None:
    # 2001 spaces would normalise to nothing; the byte bound refuses them first.
    assert _reason(lambda: normalise_prompt(" " * 2001, SETTINGS)) == "PROMPT_TOO_LONG"
    assert normalise_prompt(" " * 2000, SETTINGS) == DEFAULT_PROMPT
    assert _reason(lambda: normalise_prompt("é" * 20_000_000, SETTINGS)) == "PROMPT_TOO_LONG"


def test_a_photo_over_pillows_own_limit_reports_the_configured_one() -> None:
    huge = io.BytesIO()  # 200 megapixels: Pillow refuses it at open, before any check of ours
    Image.new("1", (20_000, 10_000)).save(huge, format="PNG")
    with pytest.raises(InvalidInput) as refused:
        validate_photo(huge.getvalue(), SETTINGS, LIMITS)
    assert refused.value.reason_code == "PHOTO_TOO_MANY_PIXELS"
    assert str(LIMITS.max_photo_pixels) in refused.value.detail


def test_output_defaults_and_limits() -> None:
    assert resolve_output(OutputSpec(), LIMITS.output) == OutputSpec(
        width=576, height=1024, fps=24, duration_ms=4000
    )
    assert resolve_output(OutputSpec(width=720, height=1280, duration_ms=6000), LIMITS.output) == (
        OutputSpec(width=720, height=1280, fps=24, duration_ms=6000)
    )
    cases = {
        "OUTPUT_SIZE_OUT_OF_RANGE": OutputSpec(width=2000, height=1000),
        "OUTPUT_SIZE_NOT_EVEN": OutputSpec(width=101, height=200),
        "OUTPUT_FPS_OUT_OF_RANGE": OutputSpec(fps=120),
        "OUTPUT_DURATION_OUT_OF_RANGE": OutputSpec(duration_ms=60_000),
    }
    for code, spec in cases.items():
        assert _reason(lambda spec=spec: resolve_output(spec, LIMITS.output)) == code


def test_a_truncated_jpeg_header_is_undecodable() -> None:
    assert _reason(lambda: validate_photo(b"\xff\xd8\xff\xe0 not a jpeg", SETTINGS, LIMITS)) == (
        "PHOTO_UNDECODABLE"
    )
