"""What every video model in the Triton repository (models/) reads and answers.

Inputs: the model's config.pbtxt names them, and each goes to the model's batch reader as
the keyword of its lower-cased name. Outputs, told apart by type: the video (TYPE_STRING:
the MP4's bytes per item), the frames (TYPE_UINT8) and, for a decoupled model that reports
its progress, [done, total] (TYPE_INT32) in responses before the final one. The model
encodes next to itself, so only compressed video crosses the network unless a request asks
for the frames.

The visible AI label is drawn into the video's frames as they are encoded (no second
encode), as the optional parameters of config.pbtxt say, the same for every model (and the
generator, which reads them from the config to label frames it encodes itself):
``ai_label`` ("on", the default, or "off" for platforms that label videos in their own
interface), ``ai_label_text`` ("AI-generated"), ``ai_label_corner`` (top-left, top-right,
bottom-left, bottom-right), ``ai_label_size`` (text height as a share of the frame's shorter
side, 0.045) and ``ai_label_opacity`` (0.85). The FRAMES output is never labelled.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alive.media import VisibleLabel, encode_h264_bytes

LABEL_PARAMETERS = {
    "ai_label_text": "text",
    "ai_label_corner": "corner",
    "ai_label_size": "size",
    "ai_label_opacity": "opacity",
}


def input_names(config: dict[str, Any], reader: Callable[..., Any]) -> list[str]:
    """The input tensors' names as the model config declares them; they must be ``reader``'s
    keywords, in any case, or the model stops at load, not at its first request."""
    inputs = [tensor["name"] for tensor in config.get("input", [])]
    taken = list(inspect.signature(reader).parameters)
    if sorted(name.lower() for name in inputs) != sorted(taken):
        raise ValueError(f"config.pbtxt inputs {inputs} do not match {[n.upper() for n in taken]}")
    return inputs


_INT32 = "TYPE_INT32"


def visible_label(config: dict[str, Any]) -> VisibleLabel | None:
    """The label a model config's parameters ask for (None: "off"); a bad value raises
    ValueError, so the model stops at load, not at its first request."""
    params = {
        key: str(value.get("string_value", ""))
        for key, value in config.get("parameters", {}).items()
    }
    switch = params.get("ai_label", "on").strip().lower()
    if switch not in ("on", "off"):
        raise ValueError(f'config.pbtxt ai_label must be "on" or "off", got {switch!r}')
    if switch == "off":
        return None
    chosen: dict[str, Any] = {
        field: params[key] for key, field in LABEL_PARAMETERS.items() if params.get(key)
    }
    for number in ("size", "opacity"):
        if number in chosen:
            chosen[number] = float(chosen[number])
    return VisibleLabel(**chosen)


@dataclass(frozen=True)
class VideoOutputs:
    video: str
    frames: str
    progress: str | None = None
    label: VisibleLabel | None = None

    @classmethod
    def of(cls, config: dict[str, Any]) -> VideoOutputs:
        """The output names a model config declares, and the label it asks for; refuses a
        config without the video and the frames, or with anything else than a progress
        output (the model then stops at load, not at its first request)."""
        outputs = config.get("output", [])
        by_type = {tensor.get("data_type"): tensor["name"] for tensor in outputs}
        required = {"TYPE_STRING", "TYPE_UINT8"}
        if len(by_type) != len(outputs) or not required <= set(by_type) <= {*required, _INT32}:
            raise ValueError(
                "config.pbtxt must declare two outputs, the video (TYPE_STRING) and the frames "
                f"(TYPE_UINT8), and may add the progress (TYPE_INT32), got {outputs}"
            )
        return cls(
            by_type["TYPE_STRING"],
            by_type["TYPE_UINT8"],
            by_type.get(_INT32),
            visible_label(config),
        )

    def progress_tensor(self, done: int, total: int) -> tuple[str, npt.NDArray[np.int32]]:
        """(name, [[done, total]]): a progress report's one output."""
        assert self.progress is not None, "the model config declares no progress output"
        return self.progress, np.array([[done, total]], dtype=np.int32)

    def tensors(
        self,
        requested: Sequence[str],
        videos: Sequence[npt.NDArray[np.uint8]],
        fps: Sequence[int],
    ) -> list[tuple[str, npt.NDArray[Any]]]:
        """(name, array) of each output the request asked for, for a request's videos."""
        out: list[tuple[str, npt.NDArray[Any]]] = []
        if self.video in requested:
            encoded = [
                [encode_h264_bytes(v, rate, label=self.label)]
                for v, rate in zip(videos, fps, strict=True)
            ]
            out.append((self.video, np.array(encoded, dtype=np.object_)))
        if self.frames in requested:
            out.append((self.frames, np.stack(list(videos))))
        return out
