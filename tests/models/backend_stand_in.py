"""A stand-in for ``triton_python_backend_utils``, the module Triton's python backend gives a
model.py: just what the adapters use, so that a test runs the real adapter without a server
(tests that need the server start a real one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np


class TritonError:
    CANCELLED, INVALID_ARG, INTERNAL = "CANCELLED", "INVALID_ARG", "INTERNAL"

    def __init__(self, message: str, code: str) -> None:
        self.message, self.code = message, code


@dataclass
class Tensor:
    name: str
    array: np.ndarray

    def as_numpy(self) -> np.ndarray:
        return self.array


@dataclass
class Response:
    output_tensors: list[Tensor] = field(default_factory=list)
    error: TritonError | None = None


FINAL = 1  # TRITONSERVER_RESPONSE_COMPLETE_FINAL


@dataclass
class ResponseSender:
    """A decoupled model's sender: keeps what was sent; nothing may follow the final one
    (Triton frees the request then)."""

    sent: list[Response] = field(default_factory=list)
    final: Response | None = None

    def send(self, response: Response, flags: int = 0) -> None:
        assert self.final is None, "a response after the final one"
        if flags == FINAL:
            self.final = response
        else:
            self.sent.append(response)


@dataclass
class Request:
    tensors: dict[str, np.ndarray]
    outputs: tuple[str, ...] = ("VIDEO", "FRAMES")
    cancelled: bool = False
    sender: ResponseSender = field(default_factory=ResponseSender)

    def is_cancelled(self) -> bool:
        assert self.sender.final is None, "is_cancelled after the final response"
        return self.cancelled

    def requested_output_names(self) -> list[str]:
        return list(self.outputs)

    def get_response_sender(self) -> ResponseSender:
        return self.sender


BACKEND_UTILS = SimpleNamespace(
    TRITONSERVER_RESPONSE_COMPLETE_FINAL=FINAL,
    TritonError=TritonError,
    InferenceResponse=Response,
    Tensor=Tensor,
    # As Triton does, None for an (optional) input the request did not send.
    get_input_tensor_by_name=lambda request, name: (
        Tensor(name, request.tensors[name]) if name in request.tensors else None
    ),
)
