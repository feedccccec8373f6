"""Generator: animates the cleared photo into a video on Triton.

Consumes Job from alive.prompt-cleared; emits it to alive.generated with ``video`` (a silent
MP4 blob) and ``generation`` (model name, version, frame count). Calls the model
``alive_animator`` (models/) over gRPC with tritonclient's asyncio client; Triton batches
concurrent requests. The model encodes the video next to itself, with the visible AI label
its config asks for (alive/model_io.py), and answers with the MP4; the generator checks its
frames and size and stores it (with ``raw_frames``, for debugging, it fetches the frames and
encodes them here, with the same label). A decoupled model (i2v_diffusion) answers on a
gRPC stream and reports its denoising steps first: they go to the job's watchers as
progress. A cancelled job's request is cancelled in Triton. Triton unreachable or
overloaded is a TransientError (retried); a model that rejects its input, or answers with a
video unlike the one asked for, is a PermanentError. Never vetoes.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from PIL import Image
from prometheus_client import CollectorRegistry, Gauge, Histogram
from tritonclient.grpc import InferInput, InferRequestedOutput, InferResult
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from alive.blobs import BlobStore, output_key
from alive.dependencies import TRITON_MODEL, DependencyDown, Probe
from alive.jobs import frame_count, video_prefix
from alive.limits import RGB_BYTES, JobLimits
from alive.media import MediaError, VisibleLabel, encode_h264_bytes, mp4_layout_bytes
from alive.memory import MIB
from alive.model_io import visible_label
from alive.pipeline import GENERATOR
from alive.reasons import ReasonCode
from alive.stage import PermanentError, Stage, StageContext, TransientError, Veto
from alive.v1.events_pb2 import BlobRef, GenerationInfo, Job
from services.generator.framing import fit_to_frame, reduce_for_camera
from services.generator.settings import GeneratorSettings

log = logging.getLogger(__name__)

# gRPC status codes that mean "try again later" rather than "this request is bad".
_TRANSIENT = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.CANCELLED",
    "StatusCode.INTERNAL",
}
# Triton's answer when a python-backend model's process has died.
DEAD_MODEL_PROCESS = re.compile(r"stub process .* is not healthy", re.IGNORECASE)
# Triton's answer for a model it knows but has no version of loaded now (while reloading).
MODEL_RELOADING = "has no available versions"
_TRANSIENT_STREAM_PHRASES = (
    "unknown model",
    "not ready",
    "unavailable",
    "generation failed",
    "request cancelled",
)
# The inputs a video model may declare (models/*/config.pbtxt): the first five every model
# takes; the diffusion model's come from settings. A model that declares the frame's size
# (WIDTH, HEIGHT) gets the whole photo and frames it itself; any other gets it fitted.
FRAME_SIZE_INPUTS = frozenset({"WIDTH", "HEIGHT"})
KNOWN_INPUTS = frozenset(
    {"IMAGE", "PROMPT", "SEED", "NUM_FRAMES", "FPS", "NEGATIVE_PROMPT", "STEPS", "GUIDANCE"}
    | FRAME_SIZE_INPUTS
)
# What is sent: the photo reduced to the frame (a few MB) and the prompt.
_MAX_SEND = 64 * MIB
_MESSAGE_HEADROOM = MIB  # around the largest answer: tensor metadata, the progress output


class GeneratorStage(Stage[Job, GeneratorSettings]):
    spec = GENERATOR

    def __init__(
        self,
        settings: GeneratorSettings,
        blobs: BlobStore,
        registry: CollectorRegistry | None = None,
        limits: JobLimits | None = None,
    ) -> None:
        """``registry``: where the Triton client metrics go (the service's; a fresh one,
        unexported, when not given); ``limits``: the job bounds (ServiceSettings.limits; the
        defaults when not given), which bound the answer it accepts."""
        super().__init__(settings, blobs)
        self._limits = limits or JobLimits()
        registry = registry or CollectorRegistry()
        # Seen from the generator: queueing in Triton, the model and the transfer of the
        # result. Triton's own nv_inference_queue_duration_us splits out the queueing.
        self._infer_seconds = Histogram(
            "alive_triton_request_seconds",
            "Time from sending an inference request to Triton to its answer, by outcome "
            "(ok, error).",
            ["model", "outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600),
            registry=registry,
        )
        for outcome in ("ok", "error"):  # at 0 from the start, so rates see the first
            self._infer_seconds.labels(settings.model_name, outcome)
        self._triton_ready_gauge = Gauge(
            "alive_triton_ready",
            "1 while Triton reports the server and the model ready to this generator.",
            ["model"],
            registry=registry,
        )
        self._client: InferenceServerClient | None = None
        self._model_version = ""
        self._inputs: tuple[str, ...] = ()
        # A decoupled model answers on a stream, with progress reports on this output first.
        self._progress_output: str | None = None
        self._label: VisibleLabel | None = None
        # Why the model cannot serve though Triton reports it ready (None: nothing known).
        self._dead_model: str | None = None
        self._reload: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._client = InferenceServerClient(
            self.settings.triton_url,
            channel_args=[
                ("grpc.max_send_message_length", _MAX_SEND),
                (
                    "grpc.max_receive_message_length",
                    self.settings.answer_bytes(self._limits) + _MESSAGE_HEADROOM,
                ),
            ],
        )

    async def stop(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reload
        if self._client is not None:
            await self._client.close()

    def probes(self) -> Mapping[str, Probe]:
        return {TRITON_MODEL: self._probe_model}

    async def _probe_model(self) -> None:
        """Whether the model can serve now: Triton's readiness of the model itself (not only
        the server's), its config one the generator can fill (read once, with the version),
        and no inference since the last reload answered that the model's process is dead.
        Run every few seconds by the service (alive/dependencies.py)."""
        assert self._client is not None
        name, ready = self.settings.model_name, False
        try:
            if self._dead_model is not None:
                self._start_reload()
                raise DependencyDown(self._dead_model)
            if not await self._client.is_model_ready(name):
                raise DependencyDown(f"Triton reports model {name} not ready")
            try:
                await self._model_inputs()
            except PermanentError as exc:
                log.error("the model cannot be served", extra={"error": exc.detail})
                raise DependencyDown(exc.detail) from exc
            ready = True
        except InferenceServerException as exc:
            raise DependencyDown(f"Triton: {exc.message()}") from exc
        finally:
            self._triton_ready_gauge.labels(name).set(1 if ready else 0)

    def _note_answer(self, error: str | None) -> None:
        """What an inference's answer says about the model's process: Triton's python
        backend does not start a dead one again and still reports the model ready, so an
        answer naming it is the only sign. Any good answer means it serves (another replica
        had the model reloaded)."""
        if error is None:
            if self._reload is None or self._reload.done():
                self._dead_model = None
        elif DEAD_MODEL_PROCESS.search(error):
            self._dead_model = f"the model's process died: {error}"

    def _start_reload(self) -> None:
        """Has Triton load the model afresh (unload, then load: a load of a loaded model does
        nothing), in the background: it takes longer than a probe may."""
        if not self.settings.reload_dead_model or (self._reload and not self._reload.done()):
            return
        self._reload = asyncio.create_task(self._reload_model())

    async def _reload_model(self) -> None:
        assert self._client is not None
        name = self.settings.model_name
        log.warning("reloading the model: its process died", extra={"model": name})
        try:
            await self._client.unload_model(name)
            await self._client.load_model(name)
        except InferenceServerException as exc:
            log.error("could not reload the model", extra={"model": name, "error": str(exc)})
            return
        self._dead_model = None
        log.info("reloaded the model", extra={"model": name})

    async def _until_cancelled(self, work: Awaitable[bytes], ctx: StageContext) -> bytes:
        """``work``, unless the job is cancelled first (the context's cancel token): then the
        inference is cancelled too (tritonclient cancels the gRPC call; Triton marks the
        request cancelled and the model stops at its next check) and the job ends here. An
        event the runner gives up (this task cancelled) cancels the inference as well."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=self.settings.cancel_check_s)
                if done:
                    return task.result()
                ctx.cancel_token.check()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _diffusion_values(self) -> dict[str, tuple[npt.NDArray[Any], str]]:
        settings = self.settings
        negative = settings.negative_prompt.encode()
        return {
            "NEGATIVE_PROMPT": (np.array([[negative]], dtype=np.object_), "BYTES"),
            "STEPS": (np.array([[settings.diffusion_steps]], dtype=np.int32), "INT32"),
            "GUIDANCE": (np.array([[settings.guidance]], dtype=np.float32), "FP32"),
        }

    async def _model_inputs(self) -> tuple[str, ...]:
        """The model's inputs, read from its config once (with its version). A model that
        declares one the generator cannot fill is refused: PermanentError."""
        assert self._client is not None
        if not self._inputs:
            name = self.settings.model_name
            try:
                config = (await self._client.get_model_config(name, as_json=True))["config"]
            except InferenceServerException as exc:
                raise triton_error(exc) from exc
            names = tuple(tensor["name"] for tensor in config.get("input", []))
            unknown = sorted(set(names) - KNOWN_INPUTS)
            if unknown:
                raise PermanentError(
                    ReasonCode.MODEL_REJECTED_INPUT,
                    f"{name} takes inputs the generator cannot fill: {unknown}",
                )
            params = config.get("parameters", {})
            version = params.get("model_version", {}).get("string_value", "")
            try:
                self._label = visible_label(config)
            except ValueError as exc:
                raise PermanentError(ReasonCode.MODEL_REJECTED_INPUT, str(exc)) from exc
            self._model_version = version or "1"
            if config.get("model_transaction_policy", {}).get("decoupled"):
                self._progress_output = progress_output(name, config)
            self._inputs = names
        return self._inputs

    def versions(self) -> Mapping[str, str]:
        return {"model": self.settings.model_name, "model_version": self._model_version or "1"}

    async def process(self, event: Job, ctx: StageContext) -> Job | Veto:
        assert self._client is not None
        spec = event.output
        raw_bytes = frame_count(spec) * spec.width * spec.height * RGB_BYTES
        if self.settings.raw_frames and raw_bytes > self.settings.answer_bytes(self._limits):
            # One gRPC message carries them: the largest allowed output's are 1.87 GB.
            raise PermanentError(
                ReasonCode.OUTPUT_TOO_LARGE,
                f"raw_frames (debugging) fetches a video's frames in one message of at most "
                f"{self.settings.raw_frames_max_mib} MiB (ALIVE_GENERATOR__RAW_FRAMES_MAX_MIB); "
                f"this output's are {raw_bytes // MIB} MiB: turn raw_frames off",
            )
        prepare = (
            reduce_for_camera
            if FRAME_SIZE_INPUTS <= set(await self._model_inputs())
            else fit_to_frame
        )

        def prepared_photo() -> npt.NDArray[np.uint8]:
            photo = Image.open(io.BytesIO(self.blobs.get_bytes(event.photo)))
            return prepare(photo, spec.width, spec.height)

        # One thread hop before the request and one after the answer: a batch's jobs all
        # pass here at once, and each hop on two cores delayed the next batch (performance.md).
        image = await asyncio.to_thread(prepared_photo)
        count = frame_count(spec)
        shape = (spec.height, spec.width, 3)
        video = await self._until_cancelled(
            self._animate(image, shape, event.prompt, event.seed, count, spec.fps, ctx), ctx
        )
        key = output_key(video_prefix(event.job_id, "generated"), ".mp4")

        def checked_and_stored() -> BlobRef:
            checked_video(video, count, shape)
            ctx.cancel_token.check()
            return self.blobs.put_bytes(key, video, "video/mp4")

        ctx.cancel_token.check()
        ref = await asyncio.to_thread(checked_and_stored)
        event.video.CopyFrom(ref)
        event.generation.CopyFrom(
            GenerationInfo(
                model_name=self.settings.model_name,
                model_version=self._model_version or "1",
                frame_count=count,
            )
        )
        return event

    async def _animate(
        self,
        image: npt.NDArray[np.uint8],
        shape: tuple[int, int, int],
        prompt: str,
        seed: int,
        num_frames: int,
        fps: int,
        ctx: StageContext,
    ) -> bytes:
        """The MP4 the model made (or, with ``raw_frames``, encoded here from its frames) of
        frames of ``shape`` (height, width, 3)."""
        values: dict[str, tuple[npt.NDArray[Any], str]] = {
            "IMAGE": (image[np.newaxis], "UINT8"),
            "WIDTH": (np.array([[shape[1]]], dtype=np.int32), "INT32"),
            "HEIGHT": (np.array([[shape[0]]], dtype=np.int32), "INT32"),
            "PROMPT": (np.array([[prompt.encode()]], dtype=np.object_), "BYTES"),
            "SEED": (np.array([[seed & (2**63 - 1)]], dtype=np.int64), "INT64"),
            "NUM_FRAMES": (np.array([[num_frames]], dtype=np.int32), "INT32"),
            "FPS": (np.array([[fps]], dtype=np.int32), "INT32"),
            **self._diffusion_values(),
        }
        inputs = [_input(name, *values[name]) for name in await self._model_inputs()]
        wanted = "FRAMES" if self.settings.raw_frames else "VIDEO"
        model, started, outcome = self.settings.model_name, time.perf_counter(), "error"
        try:
            result = await self._infer(inputs, wanted, ctx)
            outcome = "ok"
            self._note_answer(None)
        except InferenceServerException as exc:
            self._note_answer(str(exc.message()))
            raise triton_error(exc) from exc
        except grpc.RpcError as exc:
            raise TransientError(f"Triton unreachable: {exc}") from exc
        finally:
            self._infer_seconds.labels(model, outcome).observe(time.perf_counter() - started)
        if self.settings.raw_frames:
            frames = checked_frames(result.as_numpy("FRAMES"), num_frames, shape)
            return await asyncio.to_thread(encode_h264_bytes, frames, fps, label=self._label)
        return the_video(result.as_numpy("VIDEO"), self._limits.output.max_video_bytes)

    async def _infer(self, inputs: list[InferInput], wanted: str, ctx: StageContext) -> InferResult:
        """The model's answer. A decoupled model answers on a gRPC stream: the responses
        before its answer are progress reports, passed on as the job's progress."""
        assert self._client is not None
        name, timeout_s = self.settings.model_name, self.settings.infer_timeout_s
        progress = self._progress_output
        if progress is None:
            outputs = [InferRequestedOutput(wanted)]
            return await self._client.infer(name, inputs, outputs=outputs, client_timeout=timeout_s)

        async def one_request() -> AsyncIterator[dict[str, Any]]:
            yield {
                "model_name": name,
                "inputs": inputs,
                "outputs": [InferRequestedOutput(wanted), InferRequestedOutput(progress)],
            }

        stream = self._client.stream_infer(one_request(), stream_timeout=timeout_s)
        try:
            async for result, error in stream:
                if error is not None:
                    self._note_answer(str(error.message()))
                    raise streamed_error(error)
                report = result.as_numpy(progress)
                if report is None or result.as_numpy(wanted) is not None:
                    return result
                done, total = (int(n) for n in report.reshape(-1)[:2])
                await ctx.report_progress(done, total, "steps")
        finally:
            stream.cancel()  # after the answer this ends the call; before it, the request
        raise TransientError("the model's stream ended without an answer")


def progress_output(model: str, config: Mapping[str, Any]) -> str:
    """The progress output (TYPE_INT32) a decoupled model declares: its responses before the
    answer carry it. A decoupled model without one cannot be served: PermanentError."""
    outputs = config.get("output", [])
    names: list[str] = [t["name"] for t in outputs if t.get("data_type") == "TYPE_INT32"]
    if len(names) != 1:
        raise PermanentError(
            ReasonCode.MODEL_REJECTED_INPUT,
            f"{model} is decoupled but declares no single TYPE_INT32 progress output",
        )
    return names[0]


def streamed_error(exc: InferenceServerException) -> TransientError | PermanentError:
    """An error on the stream comes as text only, without a status: Triton's words for a
    model it cannot run now, and the model's for a failed generation, mean a retry may
    help; any other is the model refusing the request."""
    message = str(exc.message())
    if any(phrase in message.lower() for phrase in _TRANSIENT_STREAM_PHRASES):
        return TransientError(f"Triton: {message}")
    return PermanentError(ReasonCode.MODEL_REJECTED_INPUT, message)


def triton_error(exc: InferenceServerException) -> TransientError | PermanentError:
    """A status that means "try again later" is transient, and so is a model Triton has
    known but holds no version of now (unloaded to be loaded again); any other, the request
    is bad."""
    message = str(exc.message())
    if exc.status() is None or str(exc.status()) in _TRANSIENT or MODEL_RELOADING in message:
        return TransientError(f"Triton: {exc.message()}")
    return PermanentError(ReasonCode.MODEL_REJECTED_INPUT, str(exc.message()))


def checked_frames(
    frames: npt.NDArray[np.uint8] | None, num_frames: int, image_shape: tuple[int, ...]
) -> npt.NDArray[np.uint8]:
    """The one video of a batch-of-one output, if it has the frames and size asked for."""
    if frames is None or frames.shape[1:] != (num_frames, *image_shape):
        raise PermanentError(
            ReasonCode.MODEL_BAD_OUTPUT, f"unexpected frames shape {getattr(frames, 'shape', None)}"
        )
    return np.ascontiguousarray(frames[0])


def the_video(videos: npt.NDArray[np.object_] | None, max_bytes: int) -> bytes:
    """The one MP4 of a batch-of-one answer, if within ``max_bytes`` (the bound every later
    stage's memory budget counts on)."""
    if videos is None or videos.shape != (1, 1) or not isinstance(videos[0, 0], bytes):
        shape = getattr(videos, "shape", None)
        raise PermanentError(ReasonCode.MODEL_BAD_OUTPUT, f"unexpected VIDEO output {shape}")
    video: bytes = videos[0, 0]
    if len(video) > max_bytes:
        raise PermanentError(
            ReasonCode.OUTPUT_TOO_LARGE,
            f"the model's MP4 is {len(video)} bytes, over the {max_bytes} the job bounds allow",
        )
    return video


def checked_video(video: bytes, num_frames: int, image_shape: tuple[int, ...]) -> None:
    """Refuses an MP4 whose container does not hold the frames and size asked for: what the
    model answered is checked before it is stored and sent on (demuxed, not decoded; the
    video checkpoint decodes every frame)."""
    try:
        layout = mp4_layout_bytes(video)
    except MediaError as exc:
        detail = f"the video cannot be read: {exc}"
        raise PermanentError(ReasonCode.MODEL_BAD_OUTPUT, detail) from exc
    height, width = image_shape[:2]
    if (layout.frame_count, layout.height, layout.width) != (num_frames, height, width):
        raise PermanentError(
            ReasonCode.MODEL_BAD_OUTPUT,
            f"{layout.frame_count} frames of {layout.width}x{layout.height}, "
            f"asked {num_frames} of {width}x{height}",
        )


def _input(name: str, value: npt.NDArray[np.uint8], datatype: str) -> InferInput:
    tensor = InferInput(name, list(value.shape), datatype)
    tensor.set_data_from_numpy(value)
    return tensor
