"""Triton's python backend adapter for ``alive_animator``: decodes requests, animates, answers.

The animator itself lives in the modules beside this file (animator_vocabulary: how words
steer motion; animator_scene: photo analysis; animator_render: frames; animator_requests:
decoding a batch). Tensor names come from config.pbtxt, not from this file.
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
        self.inputs, self.output = tensor_names(config)

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
        frames = []
        for job in jobs:
            if request.is_cancelled():  # a batch item takes seconds: worth checking between
                return cancelled
            frames.append(animate(job.image, job.prompt, job.seed, job.num_frames, job.fps))
        return pb.InferenceResponse(output_tensors=[pb.Tensor(self.output, np.stack(frames))])


def tensor_names(config: dict[str, Any]) -> tuple[list[str], str]:
    """The input tensors' names and the one output's, as the model config declares them.

    Each input goes to read_batch as the keyword of its lower-cased name, so a config that
    declares other inputs stops the model at load, not at its first request.
    """
    inputs = [tensor["name"] for tensor in config.get("input", [])]
    outputs = [tensor["name"] for tensor in config.get("output", [])]
    taken = list(inspect.signature(read_batch).parameters)
    if sorted(name.lower() for name in inputs) != sorted(taken):
        raise ValueError(f"config.pbtxt inputs {inputs} do not match {[n.upper() for n in taken]}")
    if len(outputs) != 1:
        raise ValueError(f"config.pbtxt must declare one output, the frames, got {outputs}")
    return inputs, outputs[0]
