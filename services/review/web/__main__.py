"""Runs the review web app: ``python -m services.review.web``.

Its own process (and Deployment): the pages on ``ALIVE_REVIEW_WEB__PORT``, health and
Prometheus metrics on ``ALIVE_HTTP_PORT`` like every service. SIGTERM stops taking
requests, lets those in progress finish and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvicorn
from prometheus_client import CollectorRegistry

from alive.blobs import LocalBlobStore
from alive.health import HealthServer
from alive.kafka import make_producer
from alive.settings import ServiceSettings
from alive.telemetry import setup_logging, setup_tracing, shutdown_tracing
from services.review import decisions
from services.review.web.app import ReviewDesk, ReviewMetrics, make_app
from services.review.web.auth import Accounts, Sessions
from services.review.web.feed import ReviewFeed
from services.review.web.queue import ReportPolicy, ReviewQueue
from services.review.web.settings import ReviewWebSettings

SERVICE = "review-web"
log = logging.getLogger(__name__)


async def _serve(settings: ReviewWebSettings, common: ServiceSettings) -> None:
    registry = CollectorRegistry()
    queue = ReviewQueue(
        ReportPolicy(settings.report_threshold, frozenset(settings.severe_report_reasons))
    )
    metrics = ReviewMetrics(registry, queue)
    health = HealthServer(common.http_host, common.http_port, registry)
    producer = make_producer(common, client_id=SERVICE)
    key = decisions.load_private_key(settings.decision_key_path)
    blobs = LocalBlobStore(common.blob_root, common.blob_max_bytes)
    desk = ReviewDesk(settings, common, queue, blobs, producer, key, metrics)
    feed = ReviewFeed(common, queue, desk.on_report, desk.on_caught_up)
    app = make_app(desk, Accounts(settings.reviewers), Sessions(settings.session_ttl_s))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False
        )
    )
    health.add_readiness_check("queue", feed.caught_up.is_set)
    health.add_readiness_check("pages", lambda: server.started and not server.should_exit)
    await health.start()
    await producer.start()
    try:
        await feed.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        # uvicorn takes SIGTERM while it serves, then hands it back to the handler above.
        log.info("started", extra={"port": settings.port, "http_port": health.port})
        await server.serve()
    finally:
        await feed.stop()
        await producer.stop()
        await health.stop()
        log.info("stopped")


def main() -> None:
    common = ServiceSettings()
    setup_logging(SERVICE, common.log_level)
    setup_tracing(SERVICE, common.otlp_endpoint)
    try:
        asyncio.run(_serve(ReviewWebSettings(), common))
    except Exception:
        log.exception("service stopped on an error")
        sys.exit(1)
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
