"""Triton's python backend adapter for ``i2v_diffusion``: decodes requests, generates, encodes,
answers.

The pipeline code is beside this file (i2v_requests: decoding a batch; i2v_pipeline: loading
a diffusers image-to-video pipeline from local weights and running a batch). Every item of
every request Triton batched together goes to the pipeline at once, so items that can share
a call do. Tensor names come from config.pbtxt; the settings (weights path, pipeline class,
sizes the checkpoint takes) are its parameters.
"""

import json
import sys
from pathlib import Path
from typing import Any

# As for alive_animator: the python backend appends this directory to sys.path after
# site-packages; first, the siblings import the same way when loaded by path (tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from i2v_pipeline import Cancelled, Sizes, VideoPipeline
from i2v_requests import InvalidInput, Item, read_batch

from alive.model_io import VideoOutputs, input_names


class TritonPythonModel:
    """One response per request; a bad request or a failed item does not fail the others."""

    def initialize(self, args: dict[str, str]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        config = json.loads(args["model_config"])
        self.inputs = input_names(config, read_batch)
        self.outputs = VideoOutputs.of(config)
        params = {
            key: value.get("string_value", "")
            for key, value in config.get("parameters", {}).items()
        }
        if not params.get("weights_path"):
            raise ValueError("set the weights_path parameter: the pipeline folder on local disk")
        sizes = Sizes(
            int(params["frame_multiple"]), int(params["frame_offset"]), int(params["size_multiple"])
        )
        self.pipeline = VideoPipeline(
            params["pipeline_class"],
            Path(params["weights_path"]),
            sizes,
            int(params["max_sequence_length"]),
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        responses: list[Any] = [None] * len(requests)
        batches: dict[int, list[Item]] = {}
        for index, request in enumerate(requests):
            try:
                arrays = {
                    name.lower(): pb.get_input_tensor_by_name(request, name).as_numpy()
                    for name in self.inputs
                }
                batches[index] = read_batch(**arrays)
            except InvalidInput as exc:
                responses[index] = self._error(str(exc), pb.TritonError.INVALID_ARG)
        videos = self._generate(requests, batches, responses)
        for index, items in batches.items():
            if responses[index] is None:
                requested = requests[index].requested_output_names()
                tensors = self.outputs.tensors(requested, videos[index], [i.fps for i in items])
                responses[index] = pb.InferenceResponse(
                    output_tensors=[pb.Tensor(name, array) for name, array in tensors]
                )
        return responses

    def _generate(
        self, requests: list[Any], batches: dict[int, list[Item]], responses: list[Any]
    ) -> dict[int, list[Any]]:
        """Every request's videos; all items in one go, and on a failure each request alone,
        so that one request's error fails that request only."""
        live = [i for i in batches if not requests[i].is_cancelled()]
        for index in set(batches) - set(live):
            responses[index] = self._error("request cancelled", self.pb.TritonError.CANCELLED)
        everything = [item for index in live for item in batches[index]]
        try:
            frames = self.pipeline.generate(
                everything, lambda: all(requests[i].is_cancelled() for i in live)
            )
        except Cancelled:
            for index in live:
                responses[index] = self._error("request cancelled", self.pb.TritonError.CANCELLED)
            return {}
        except Exception as exc:
            if len(live) == 1:
                message = f"generation failed: {exc}"[:500]
                responses[live[0]] = self._error(message, self.pb.TritonError.INTERNAL)
                return {}
            return self._one_by_one(requests, batches, live, responses)
        videos: dict[int, list[Any]] = {}
        start = 0
        for index in live:
            videos[index] = frames[start : start + len(batches[index])]
            start += len(batches[index])
        return videos

    def _one_by_one(
        self,
        requests: list[Any],
        batches: dict[int, list[Item]],
        live: list[int],
        responses: list[Any],
    ) -> dict[int, list[Any]]:
        videos: dict[int, list[Any]] = {}
        for index in live:
            try:
                videos[index] = self.pipeline.generate(batches[index], requests[index].is_cancelled)
            except Exception as exc:
                responses[index] = self._error(
                    f"generation failed: {exc}"[:500], self.pb.TritonError.INTERNAL
                )
        return videos

    def _error(self, message: str, code: Any) -> Any:
        return self.pb.InferenceResponse(error=self.pb.TritonError(message, code))
