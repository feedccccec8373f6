"""The one validation path for a submission, shared by the gRPC API and the Kafka intake.

Photos: JPEG, PNG or WebP, decoded with Pillow, within byte and pixel limits (the pixel
limit is checked from the header, before decoding, so decompression bombs never expand),
EXIF orientation applied, re-encoded as PNG (which also drops EXIF, GPS included).
Prompts: Unicode-normalised, whitespace collapsed, no control or bidi-override characters,
within a length limit; empty means the default prompt. A problem is an ``InvalidInput``
with a reason code from docs/reason-codes.md.
"""

from __future__ import annotations

import io
import unicodedata
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from alive.jobs import DEFAULT_PROMPT, MAX_ID_CHARS, valid_id
from alive.limits import JobLimits, OutputLimits
from alive.reasons import ReasonCode, ReasonError
from alive.v1.events_pb2 import OutputSpec
from services.ingest.settings import IngestSettings

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")


class InvalidInput(ReasonError):
    """The submission breaks a rule: rejected with its reason code."""


@dataclass(frozen=True)
class ValidPhoto:
    png: bytes
    width: int
    height: int
    source_format: str


def validate_photo(data: bytes, settings: IngestSettings, limits: JobLimits) -> ValidPhoto:
    """The photo upright, re-encoded as PNG, if it passes every rule. Decoded at full size
    once: orientation and mode are changed in place, never in copies (a 40-megapixel photo
    is 120 MB of pixels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = _opened(data, settings, limits.max_photo_pixels)
        source_format = str(image.format)
        try:
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            upright = image if image.mode == "RGB" else image.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(
                ReasonCode.PHOTO_UNDECODABLE, f"the image data is broken: {exc}"
            ) from exc
    out = io.BytesIO()
    upright.save(out, format="PNG")
    return ValidPhoto(out.getvalue(), upright.width, upright.height, source_format)


def _opened(data: bytes, settings: IngestSettings, max_pixels: int) -> Image.Image:
    """The photo opened (its header read, nothing decoded), if its bytes, format, pixel
    count and sides are within the limits."""
    if not data:
        raise InvalidInput(ReasonCode.PHOTO_EMPTY, "the photo has no bytes")
    if len(data) > settings.max_photo_bytes:
        raise InvalidInput(
            ReasonCode.PHOTO_TOO_LARGE,
            f"{len(data)} bytes; the limit is {settings.max_photo_bytes}",
        )
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's own bomb limit; the caller knows only the configured one.
        raise InvalidInput(
            ReasonCode.PHOTO_TOO_MANY_PIXELS,
            f"over the limit of {max_pixels} pixels",
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(ReasonCode.PHOTO_UNDECODABLE, "not a readable image") from exc
    if image.format not in ACCEPTED_FORMATS:
        raise InvalidInput(
            ReasonCode.PHOTO_UNSUPPORTED_FORMAT, f"{image.format}; accepted: JPEG, PNG, WebP"
        )
    width, height = image.size
    if width * height > max_pixels:
        raise InvalidInput(
            ReasonCode.PHOTO_TOO_MANY_PIXELS,
            f"{width}x{height}; the limit is {max_pixels} pixels",
        )
    if min(width, height) < settings.min_photo_side:
        raise InvalidInput(
            ReasonCode.PHOTO_TOO_SMALL,
            f"{width}x{height}; each side needs {settings.min_photo_side}",
        )
    return image


_ALLOWED_FORMAT_CHARS = {"\u200d"}  # zero-width joiner: part of many emoji


def check_ids(creator_id: str, request_id: str) -> None:
    """Both ids present, in the safe alphabet and within the length bound (alive/jobs.py)."""
    for value, missing, invalid, name in (
        (creator_id, ReasonCode.MISSING_CREATOR_ID, ReasonCode.INVALID_CREATOR_ID, "creator_id"),
        (request_id, ReasonCode.MISSING_REQUEST_ID, ReasonCode.INVALID_REQUEST_ID, "request_id"),
    ):
        if not value:
            raise InvalidInput(missing, f"{name} is required")
        if not valid_id(value):
            raise InvalidInput(
                invalid,
                f"{name} must be 1..{MAX_ID_CHARS} letters, digits or . _ : @ + = -, "
                "starting with a letter or digit",
            )


def normalise_prompt(prompt: str, settings: IngestSettings) -> str:
    # Checked before any work, so a huge prompt costs nothing (4 bytes a code point at most).
    if len(prompt.encode("utf-8", errors="surrogatepass")) > 4 * settings.max_prompt_chars:
        raise InvalidInput(
            ReasonCode.PROMPT_TOO_LONG, f"over {4 * settings.max_prompt_chars} bytes"
        )
    text = unicodedata.normalize("NFC", prompt)
    text = " ".join(text.replace("\t", " ").replace("\r", " ").replace("\n", " ").split())
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co") or (
            category == "Cf" and char not in _ALLOWED_FORMAT_CHARS
        ):
            raise InvalidInput(
                ReasonCode.PROMPT_CONTROL_CHARACTERS, f"the prompt contains U+{ord(char):04X}"
            )
    if len(text) > settings.max_prompt_chars:
        raise InvalidInput(
            ReasonCode.PROMPT_TOO_LONG,
            f"{len(text)} characters; the limit is {settings.max_prompt_chars}",
        )
    return text or DEFAULT_PROMPT


def resolve_output(spec: OutputSpec, lim: OutputLimits) -> OutputSpec:
    """Fills defaults for zero fields and checks the request is within limits."""
    width, height = spec.width or lim.default_width, spec.height or lim.default_height
    fps = spec.fps or lim.default_fps
    duration_ms = spec.duration_ms or lim.default_duration_ms
    if not (lim.min_side <= width <= lim.max_width and lim.min_side <= height <= lim.max_height):
        raise InvalidInput(
            ReasonCode.OUTPUT_SIZE_OUT_OF_RANGE,
            f"{width}x{height}; allowed {lim.min_side}..{lim.max_width} x "
            f"{lim.min_side}..{lim.max_height}",
        )
    if width % 2 or height % 2:
        raise InvalidInput(
            ReasonCode.OUTPUT_SIZE_NOT_EVEN, f"{width}x{height}; H.264 needs even sides"
        )
    if not lim.min_fps <= fps <= lim.max_fps:
        raise InvalidInput(
            ReasonCode.OUTPUT_FPS_OUT_OF_RANGE, f"{fps}; allowed {lim.min_fps}..{lim.max_fps}"
        )
    if not lim.min_duration_ms <= duration_ms <= lim.max_duration_ms:
        raise InvalidInput(
            ReasonCode.OUTPUT_DURATION_OUT_OF_RANGE,
            f"{duration_ms} ms; allowed {lim.min_duration_ms}..{lim.max_duration_ms}",
        )
    return OutputSpec(width=width, height=height, fps=fps, duration_ms=duration_ms)
