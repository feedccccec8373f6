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


@dataclass
class Request:
    tensors: dict[str, np.ndarray]
    outputs: tuple[str, ...] = ("VIDEO", "FRAMES")
    cancelled: bool = False

    def is_cancelled(self) -> bool:
        return self.cancelled

    def requested_output_names(self) -> list[str]:
        return list(self.outputs)


BACKEND_UTILS = SimpleNamespace(
    TritonError=TritonError,
    InferenceResponse=Response,
    Tensor=Tensor,
    # As Triton does, None for an (optional) input the request did not send.
    get_input_tensor_by_name=lambda request, name: (
        Tensor(name, request.tensors[name]) if name in request.tensors else None
    ),
)
