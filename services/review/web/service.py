"""The review web app put together: queue, feed, producer, pages. ``__main__`` runs one until
SIGTERM; tests run one in process against the test broker."""

from __future__ import annotations

import asyncio
import contextlib

import uvicorn
from prometheus_client import CollectorRegistry

from alive.blobs import open_configured_blob_store
from alive.dependencies import BLOB_STORE, BROKER, TOPICS, BlobStoreProbe, DependencyMonitor
from alive.health import HealthServer
from alive.kafka import BrokerProbes, make_producer
from alive.pipeline import PUBLISH_REQUESTS
from alive.settings import ServiceSettings
from services.review import decisions
from services.review.web.app import ReviewDesk, ReviewMetrics, make_app
from services.review.web.auth import Accounts, Sessions
from services.review.web.feed import FEED_TOPICS, ReviewFeed
from services.review.web.queue import ReportPolicy, ReviewQueue
from services.review.web.settings import ReviewWebSettings

SERVICE = "review-web"


class ReviewWeb:
    def __init__(
        self,
        settings: ReviewWebSettings,
        common: ServiceSettings,
        registry: CollectorRegistry,
        health: HealthServer | None = None,
    ) -> None:
        """``health``: the service's health server; its readiness then names each dependency
        (the broker, the review topics, the blob store) the app cannot use."""
        self.settings = settings
        policy = ReportPolicy(
            settings.report_threshold,
            frozenset(settings.severe_report_reasons),
            settings.policy_version,
        )
        self.queue = ReviewQueue(policy)
        self.metrics = ReviewMetrics(registry, self.queue)
        self.producer = make_producer(common, client_id=SERVICE)
        blobs = open_configured_blob_store(common)
        # What a stage's service probes (alive/service.py), for the topics this app uses.
        self.dependencies = DependencyMonitor(SERVICE, registry)
        self._broker = BrokerProbes(common, [*FEED_TOPICS, PUBLISH_REQUESTS])
        self._blob_probe = BlobStoreProbe(blobs)
        self.dependencies.add(BROKER, self._broker.broker, health)
        self.dependencies.add(TOPICS, self._broker.topics, health)
        self.dependencies.add(BLOB_STORE, self._blob_probe, health)
        key = decisions.load_private_key(settings.decision_key_path)
        self.desk = ReviewDesk(
            settings, common, self.queue, blobs, self.producer, key, self.metrics
        )
        self.feed = ReviewFeed(common, self.queue, self.desk.on_report, self.desk.on_caught_up)
        app = make_app(self.desk, Accounts(settings.reviewers), Sessions(settings.session_ttl_s))
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host=settings.host, port=settings.port, log_config=None, access_log=False
            )
        )
        self._serving: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        serving = self.feed.healthy and self.server.started and not self.server.should_exit
        return serving and not self.dependencies.down()

    @property
    def port(self) -> int:
        """The port the pages are served on (the configured one, or the one picked for 0)."""
        sockets = [s for server in self.server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1]) if sockets else self.settings.port

    async def start(self) -> None:
        """Rebuilds the queue from Kafka, then serves the pages."""
        await self.dependencies.start()
        await self.producer.start()
        await self.feed.start()
        self._serving = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._serving.done():
                self._serving.result()  # raises why it could not start
                raise RuntimeError("the review web app stopped before it served")
            await asyncio.sleep(0.05)

    async def serve_until_stopped(self) -> None:
        if self._serving is not None:
            await self._serving

    def request_stop(self) -> None:
        self.server.should_exit = True

    async def stop(self) -> None:
        """Finishes requests in progress, then stops following Kafka."""
        self.request_stop()
        if self._serving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        await self.feed.stop()
        await self.producer.stop()
        await self.dependencies.stop()
        await self._broker.close()
        self._blob_probe.close()
