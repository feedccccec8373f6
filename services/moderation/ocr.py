"""Text written in an image, read with PP-OCR (rapidocr on onnxruntime, with the detection and
recognition models that ship inside the ``rapidocr`` wheel: Apache-2.0; nothing is
downloaded). The photo and video checkpoints send what it reads through the prompt policy,
so "KILL YOURSELF" written on a photo or on every frame is judged like the same prompt.

Like the NSFW model it loads once, at start; a failure leaves ``ready`` false and reading
raises ``TransientError``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import numpy.typing as npt

from alive.stage import TransientError

log = logging.getLogger(__name__)


class TextReader:
    def __init__(self, max_side: int, min_score: float) -> None:
        self._max_side = max_side
        self._min_score = min_score
        self._engine: Any = None

    @property
    def ready(self) -> bool:
        return self._engine is not None

    def load(self) -> None:
        from rapidocr import RapidOCR  # imported here: it loads onnxruntime and OpenCV

        try:
            self._engine = RapidOCR(
                params={
                    # Upright text is what matters here; skipping the angle classifier
                    # halves the time. Detection on at most max_side pixels.
                    "Global.use_cls": False,
                    "Global.log_level": "error",  # not a warning per photo without text
                    "Det.limit_type": "max",
                    "Det.limit_side_len": self._max_side,
                    # One thread: the checkpoints run OCR beside the other models.
                    "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                }
            )
        except Exception as exc:
            log.error("the OCR models did not load", extra={"error": f"{exc!r}"[:300]})

    def read(self, image: npt.NDArray[np.uint8]) -> str:
        """The lines of text found (RGB image), joined by newlines; empty if none."""
        if self._engine is None:
            raise TransientError("the OCR models are not loaded")
        result = self._engine(image)
        lines = result.txts or () if result is not None else ()
        scores = result.scores or () if result is not None else ()
        return "\n".join(t for t, s in zip(lines, scores, strict=False) if s >= self._min_score)
