"""Triton's python backend adapter for ``alive_animator``: decodes requests, animates, encodes,
answers.

The animator itself lives in the modules beside this file (animator_vocabulary: how words
steer motion; animator_scene: photo analysis; animator_render: frames; animator_requests:
decoding a batch). Each video is encoded here, next to the model (alive.media), so that the
answer is an MP4 of a few hundred kilobytes, not the raw frames (170 MB at the default
size); the raw frames go out only to a request that asks for them. Tensor names come from
config.pbtxt, not from this file: the string output is the video, the uint8 one the frames.
"""

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Triton's python backend (2.51 checked) appends this directory to sys.path, after
# site-packages, and imports this file as "1.model". Putting the directory first makes the
# siblings import the same way when this file is loaded by path (tests) and win over any
# installed module; their "animator_" prefix keeps them from shadowing one in turn.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from animator_render import InvalidInput, animate
from animator_requests import read_batch

from alive.media import encode_h264_bytes

MODEL_VERSION = "procedural-animator-1"


class TritonPythonModel:
    """Triton's python backend entry point: one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        declared = config.get("parameters", {}).get("model_version", {}).get("string_value")
        if declared != MODEL_VERSION:
            raise ValueError(
                f"config.pbtxt says model_version {declared!r}, code is {MODEL_VERSION}"
            )
        self.inputs, self.video, self.frames = tensor_names(config)

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._respond(request) for request in requests]

    def _respond(self, request: Any) -> Any:
        pb = self.pb
        cancelled = pb.InferenceResponse(
            error=pb.TritonError("request cancelled", pb.TritonError.CANCELLED)
        )
        if request.is_cancelled():
            return cancelled
        try:
            arrays = {
                name.lower(): pb.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.inputs
            }
            jobs = read_batch(**arrays)
        except InvalidInput as exc:
            return pb.InferenceResponse(error=pb.TritonError(str(exc), pb.TritonError.INVALID_ARG))
        wanted = set(request.requested_output_names())
        videos, frames = [], []
        for job in jobs:
            if request.is_cancelled():  # a batch item takes seconds: worth checking between
                return cancelled
            rendered = animate(job.image, job.prompt, job.seed, job.num_frames, job.fps)
            if self.video in wanted:
                videos.append([encode_h264_bytes(rendered, job.fps)])
            if self.frames in wanted:
                frames.append(rendered)
        outputs = []
        if videos:
            outputs.append(pb.Tensor(self.video, np.array(videos, dtype=np.object_)))
        if frames:
            outputs.append(pb.Tensor(self.frames, np.stack(frames)))
        return pb.InferenceResponse(output_tensors=outputs)


def tensor_names(config: dict[str, Any]) -> tuple[list[str], str, str]:
    """The input tensors' names, then the video output's and the frames output's, as the
    model config declares them.

    Each input goes to read_batch as the keyword of its lower-cased name, so a config that
    declares other inputs stops the model at load, not at its first request.
    """
    inputs = [tensor["name"] for tensor in config.get("input", [])]
    taken = list(inspect.signature(read_batch).parameters)
    if sorted(name.lower() for name in inputs) != sorted(taken):
        raise ValueError(f"config.pbtxt inputs {inputs} do not match {[n.upper() for n in taken]}")
    by_type = {tensor.get("data_type"): tensor["name"] for tensor in config.get("output", [])}
    if len(config.get("output", [])) != 2 or set(by_type) != {"TYPE_STRING", "TYPE_UINT8"}:
        raise ValueError(
            "config.pbtxt must declare two outputs: the video (TYPE_STRING) and the frames "
            f"(TYPE_UINT8), got {config.get('output')}"
        )
    return inputs, by_type["TYPE_STRING"], by_type["TYPE_UINT8"]
