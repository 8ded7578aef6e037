"""Prometheus metrics of the API: requests and latencies by route, queue depths, jobs by state, faces.

Each app has its own registry (several servers in one process do not mix their numbers). Requests
are labelled by route template (`/v1/jobs/{job_id}`), never by the raw path, so job ids do not
multiply the series.
"""

from __future__ import annotations

import time
from typing import Any, Awaitable, Callable, MutableMapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class ServerMetrics:
    """The metrics of one server and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vidrestore_http_requests", "HTTP requests answered, by method, route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("vidrestore_http_request_duration_seconds", "time from request to the end of "
                                 "the response, by method and route", ["method", "route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.faces = Counter("vidrestore_faces_restored", "faces restored, in images and in video frames",
                             ["kind"], registry=self.registry)
        self.batch_size = Histogram("vidrestore_image_batch_size", "images restored together in one model call",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("vidrestore_queue_depth", "work waiting: images for the model, video jobs "
                                 "queued or uploading", ["queue"], registry=self.registry)
        self.jobs = Gauge("vidrestore_jobs", "video jobs known to the server, by state", ["state"],
                          registry=self.registry)

    def watch(self, name: str, read: Callable[[], float]) -> None:
        """Report a queue's depth by calling `read` at each scrape."""
        self.queue_depth.labels(name).set_function(read)

    def watch_jobs(self, states: list[str], count: Callable[[str], float]) -> None:
        """Report the number of jobs in each state at each scrape."""
        for state in states:
            self.jobs.labels(state).set_function(lambda state=state: count(state))

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Pure ASGI middleware: counts each HTTP request and times it to the end of its response body."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "GET") if scope.get("method") in METHODS else "other"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
