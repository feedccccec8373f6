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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# As for alive_animator: the python backend appends this directory to sys.path after
# site-packages; first, the siblings import the same way when loaded by path (tests).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from i2v_pipeline import Cancelled, Sizes, VideoPipeline
from i2v_requests import InvalidInput, Item, read_batch

from alive.model_io import VideoOutputs, input_names


class TritonPythonModel:
    """Decoupled (config.pbtxt): while a request's group denoises, a progress response per
    step (when the request asks for the progress output), then one final response, its
    videos or its error. A bad request or a failed item does not fail the others."""

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

    def execute(self, requests: list[Any]) -> None:
        pb = self.pb
        senders = [request.get_response_sender() for request in requests]
        for sender, response in zip(senders, self._answers(requests, senders), strict=True):
            # A request is not touched after its final response: Triton frees it then.
            sender.send(response, flags=pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL)

    def _answers(self, requests: list[Any], senders: list[Any]) -> list[Any]:
        """Each request's final response."""
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
        videos = self._generate(requests, senders, batches, responses)
        for index, items in batches.items():
            if responses[index] is None:
                requested = requests[index].requested_output_names()
                tensors = self.outputs.tensors(requested, videos[index], [i.fps for i in items])
                responses[index] = pb.InferenceResponse(
                    output_tensors=[pb.Tensor(name, array) for name, array in tensors]
                )
        return responses

    def _generate(
        self,
        requests: list[Any],
        senders: list[Any],
        batches: dict[int, list[Item]],
        responses: list[Any],
    ) -> dict[int, list[Any]]:
        """Every request's videos; all items in one go, and on a failure each request alone,
        so that one request's error fails that request only."""
        live = [i for i in batches if not requests[i].is_cancelled()]
        for index in set(batches) - set(live):
            responses[index] = self._error("request cancelled", self.pb.TritonError.CANCELLED)
        everything = [item for index in live for item in batches[index]]
        owners = [index for index in live for _ in batches[index]]
        try:
            frames = self.pipeline.generate(
                everything,
                lambda: all(requests[i].is_cancelled() for i in live),
                self._step_reporter(requests, senders, owners),
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
            return self._one_by_one(requests, senders, batches, live, responses)
        videos: dict[int, list[Any]] = {}
        start = 0
        for index in live:
            videos[index] = frames[start : start + len(batches[index])]
            start += len(batches[index])
        return videos

    def _one_by_one(
        self,
        requests: list[Any],
        senders: list[Any],
        batches: dict[int, list[Item]],
        live: list[int],
        responses: list[Any],
    ) -> dict[int, list[Any]]:
        videos: dict[int, list[Any]] = {}
        for index in live:
            owners = [index] * len(batches[index])
            try:
                videos[index] = self.pipeline.generate(
                    batches[index],
                    requests[index].is_cancelled,
                    self._step_reporter(requests, senders, owners),
                )
            except Exception as exc:
                responses[index] = self._error(
                    f"generation failed: {exc}"[:500], self.pb.TritonError.INTERNAL
                )
        return videos

    def _step_reporter(
        self, requests: list[Any], senders: list[Any], owners: list[int]
    ) -> Callable[[Sequence[int], int, int], None]:
        """The pipeline's on_step for items owned by ``owners[item]``: a progress response to
        each of their requests that asked for the progress output."""

        def report(items: Sequence[int], done: int, total: int) -> None:
            for index in sorted({owners[i] for i in items}):
                if self.outputs.progress in requests[index].requested_output_names():
                    name, array = self.outputs.progress_tensor(done, total)
                    response = self.pb.InferenceResponse(
                        output_tensors=[self.pb.Tensor(name, array)]
                    )
                    senders[index].send(response)

        return report

    def _error(self, message: str, code: Any) -> Any:
        return self.pb.InferenceResponse(error=self.pb.TritonError(message, code))
