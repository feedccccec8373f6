"""The fixed-cost stand-in (config.pbtxt beside this folder): sleeps, then answers black
videos of the asked frames and size (their encoding is part of its time, as for a real
model that encodes next to itself)."""

import json
import time
from typing import Any

import numpy as np

from alive.model_io import VideoOutputs


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.batch_cost_s = float(params["batch_cost_s"])
        self.item_cost_s = float(params["item_cost_s"])
        self.outputs = VideoOutputs.of(config)

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        shapes = []
        for request in requests:
            image = pb.get_input_tensor_by_name(request, "IMAGE").as_numpy()
            frames = pb.get_input_tensor_by_name(request, "NUM_FRAMES").as_numpy().reshape(-1)
            fps = pb.get_input_tensor_by_name(request, "FPS").as_numpy().reshape(-1)
            shapes.append(
                [
                    (int(n), image.shape[1], image.shape[2], int(f))
                    for n, f in zip(frames, fps, strict=True)
                ]
            )
        time.sleep(self.batch_cost_s + self.item_cost_s * sum(map(len, shapes)))
        responses = []
        for request, items in zip(requests, shapes, strict=True):
            videos = [np.zeros((n, h, w, 3), np.uint8) for n, h, w, _ in items]
            tensors = self.outputs.tensors(
                request.requested_output_names(), videos, [f for *_, f in items]
            )
            responses.append(pb.InferenceResponse([pb.Tensor(n, a) for n, a in tensors]))
        return responses
