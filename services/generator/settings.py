"""Generator settings: where Triton is and which model animates."""

from __future__ import annotations

from alive.settings import ServiceSettings


class GeneratorSettings(ServiceSettings):
    triton_url: str = "127.0.0.1:8001"
    model_name: str = "alive_animator"
    # One inference may take this long before it counts as a (transient) failure.
    infer_timeout_s: float = 300.0
    # Several jobs in flight let Triton's dynamic batcher fill a batch.
    max_in_flight: int = 8
    # Triton unavailable is the transient error this service expects: ride out a restart
    # (one to two minutes of jittered backoff) before a job fails.
    max_attempts: int = 10
    retry_max_s: float = 30.0
