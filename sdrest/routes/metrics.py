"""`GET /metrics` in Prometheus's text format, and the middleware that counts HTTP requests by route template."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest.metrics import Metrics
from sdrest.routes.jobs import services


async def metrics(request: Request) -> Response:
    svc = services(request)
    queued = {"generation": len(svc.queue.lane.queued()), "tasks": len(svc.queue.task_lane.queued())}
    body = await run_in_threadpool(svc.metrics.render, queued)  # walks the outputs folder: not on the loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _route(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"  # never the raw path: that would make one time series per URL
    return str(scope.get("root_path", "")) + path or "/"  # the web UI's mount at "/" has an empty path


class HttpMetrics:
    """Counts requests by route template and status, and times them until their response starts."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], Metrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                metrics = self.metrics()
                if metrics is not None:
                    metrics.http_seconds.labels(scope["method"], _route(scope)).observe(time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            metrics = self.metrics()
            if metrics is not None:
                metrics.http.labels(scope["method"], _route(scope), str(status)).inc()


routes = [Route("/metrics", metrics, methods=["GET"])]
