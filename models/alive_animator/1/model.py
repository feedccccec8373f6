"""Triton's python backend adapter for ``alive_animator``: decodes requests, animates, encodes,
answers.

The animator itself lives in the modules beside this file (animator_vocabulary: how words
select effects; animator_subjects: people and faces, by mediapipe's models; animator_scene:
photo analysis; animator_faces: blinks, wink, smile, tilt; animator_effects: particles and
grades; animator_render: camera and frames; animator_requests: decoding a batch). Each video
is encoded here, next to the model (alive.media), so that the answer is an MP4 of a few
hundred kilobytes, not the raw frames (170 MB at the default size); the raw frames go out
only to a request that asks for them. Tensor names come from config.pbtxt, not from this
file: the string output is the video, the uint8 one the frames.
"""

import json
import sys
from pathlib import Path
from typing import Any

# Triton's python backend (2.51 checked) appends this directory to sys.path, after
# site-packages, and imports this file as "1.model". Putting the directory first makes the
# siblings import the same way when this file is loaded by path (tests) and win over any
# installed module; their "animator_" prefix keeps them from shadowing one in turn.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from animator_render import FRAMINGS, InvalidInput, animate
from animator_requests import read_batch

from alive.model_io import VideoOutputs, input_names

MODEL_VERSION = "procedural-animator-2"


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
        self.framing = config.get("parameters", {}).get("framing", {}).get("string_value", "auto")
        if self.framing not in FRAMINGS:
            raise ValueError(f"config.pbtxt framing {self.framing!r} is not one of {FRAMINGS}")
        self.inputs = input_names(config, read_batch)
        self.outputs = VideoOutputs.of(config)

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
            given = {name: pb.get_input_tensor_by_name(request, name) for name in self.inputs}
            # An optional input the request left out is absent (None): the reader's default.
            arrays = {n.lower(): t.as_numpy() for n, t in given.items() if t is not None}
            jobs = read_batch(**arrays)
        except InvalidInput as exc:
            return pb.InferenceResponse(error=pb.TritonError(str(exc), pb.TritonError.INVALID_ARG))
        videos = []
        for job in jobs:
            if request.is_cancelled():  # a batch item takes seconds: worth checking between
                return cancelled
            frames = animate(
                job.image, job.prompt, job.seed, job.num_frames, job.fps,
                width=job.width, height=job.height, framing=self.framing,
            )  # fmt: skip
            videos.append(frames)
        requested = request.requested_output_names()
        tensors = self.outputs.tensors(requested, videos, [job.fps for job in jobs])
        return pb.InferenceResponse(output_tensors=[pb.Tensor(n, a) for n, a in tensors])
