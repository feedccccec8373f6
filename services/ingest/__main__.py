"""Runs the ingest service: the Kafka intake stage, the status view, the folder of job
states and the gRPC API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alive.erasure import Eraser, crypto_shredding, job_data_steps
from alive.pipeline import JOBS, REVIEW_QUEUE
from alive.service import Component, ServiceRuntime, serve
from alive.stage import Stage
from alive.telemetry import GrpcServerMetrics
from services.ingest.api import AliveApi, ApiServer, topic_tombstones, unpublish_erased
from services.ingest.auth import TokenVerifier
from services.ingest.job_states import JobStateFolder
from services.ingest.settings import IngestSettings
from services.ingest.stage import IngestStage
from services.ingest.status_view import StatusView


def build(
    settings: IngestSettings, runtime: ServiceRuntime
) -> tuple[Stage[Any, Any], Sequence[Component]]:
    view = StatusView(runtime.settings, settings, runtime.metrics.registry)
    runtime.health.add_readiness_check("status-view", lambda: view.ready)
    folder = JobStateFolder(
        runtime.settings, settings, runtime.producer, view.lookup, view.may_exist, view.caught_up
    )
    view.on_erased.append(folder.forget)
    stage = IngestStage(settings, runtime.blobs, runtime.settings.limits)
    # What an erasure deletes, in order (alive/erasure.py); each further kind of deletion
    # (a job's data key, a tombstone on another topic) is one more step here.
    eraser = Eraser(
        runtime.blobs,
        [
            unpublish_erased(runtime.producer, runtime.settings, runtime.ledger),
            *job_data_steps(runtime.blobs),
            crypto_shredding(runtime.blobs),
            topic_tombstones(runtime.producer, runtime.settings, [JOBS, REVIEW_QUEUE]),
        ],
    )
    api = AliveApi(
        settings,
        runtime.settings,
        runtime.blobs,
        runtime.ledger,
        runtime.producer,
        view,
        stage.job_ids,
        TokenVerifier.from_settings(settings),
        eraser,
        dependencies=runtime.dependencies,
    )
    grpc_metrics = GrpcServerMetrics(stage.spec.name, runtime.metrics.registry)
    return stage, [view, folder, ApiServer(settings, api, [grpc_metrics])]


if __name__ == "__main__":
    serve(IngestStage, IngestSettings(), build)
