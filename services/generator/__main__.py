"""Runs the generator service."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alive.service import Component, ServiceRuntime, serve
from alive.stage import Stage
from services.generator.settings import GeneratorSettings
from services.generator.stage import GeneratorStage


def build(
    settings: GeneratorSettings, runtime: ServiceRuntime
) -> tuple[Stage[Any, Any], Sequence[Component]]:
    stage = GeneratorStage(
        settings, runtime.blobs, runtime.metrics.registry, runtime.settings.limits
    )
    return stage, []


if __name__ == "__main__":
    serve(GeneratorStage, GeneratorSettings(), build)
