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

from prometheus_client import CollectorRegistry

from alive.health import HealthServer
from alive.settings import ServiceSettings
from alive.telemetry import setup_logging, setup_tracing, shutdown_tracing
from services.review.web.service import SERVICE, ReviewWeb
from services.review.web.settings import ReviewWebSettings

log = logging.getLogger(__name__)


async def _serve(settings: ReviewWebSettings, common: ServiceSettings) -> None:
    registry = CollectorRegistry()
    health = HealthServer(common.http_host, common.http_port, registry)
    web = ReviewWeb(settings, common, registry, health)
    health.add_readiness_check(SERVICE, lambda: web.ready)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # uvicorn takes these while it serves and hands them back here when it stops.
        loop.add_signal_handler(sig, web.request_stop)
    await health.start()
    try:
        await web.start()
        log.info("started", extra={"port": web.port, "http_port": health.port})
        await web.serve_until_stopped()
    finally:
        await web.stop()
        await health.stop()
        log.info("stopped")


def main() -> None:
    common = ServiceSettings()
    setup_logging(SERVICE, common.log_level)
    setup_tracing(SERVICE, common.otlp_endpoint, common.trace_dir)
    try:
        asyncio.run(_serve(ReviewWebSettings(), common))
    except Exception:
        log.exception("service stopped on an error")
        sys.exit(1)
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    main()
