"""`create_app(settings)`: the one place that knows every part of the server and wires them together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import prometheus_client
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdrest import errors, service, services
from sdrest.access import AccessControl, Authenticator
from sdrest.auth import system_accounts
from sdrest.engine.protocol import Engine
from sdrest.jobs.errors import JobsError
from sdrest.metrics import Metrics
from sdrest.routes import accounts, auth, docs, generate, jobs, models, openai_images, sdapi, system
from sdrest.routes import metrics as metrics_routes
from sdrest.routes.metrics import HttpMetrics
from sdrest.settings import Settings

# Clients of the compatible APIs read refusals (401, 403) in their own family's error shape.
ERROR_SHAPES = (("/v1/", openai_images.openai_error), ("/sdapi/v1/", sdapi.a1111_error))

log = logging.getLogger("sdrest")
STARTER_FOR_CPU = "sd-turbo"  # the starter `sdrest pull` suggests on an empty library (fast on a CPU)


class BodyLimit:
    """Refuse request bodies over the limit with a 413, whether or not they declare a Content-Length."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = errors.PayloadTooLarge(f"the request body is limited to {self.limit} bytes")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await errors.json_response(too_large.body(), too_large.status)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited, send)


def _on_sighup(svc: services.Services, reload: Callable[[], Settings]) -> None:
    """SIGHUP rereads the config and rescans the library, without dropping a job."""
    loop = asyncio.get_running_loop()

    def reread() -> None:
        service.notify("RELOADING=1")
        try:
            svc.reload(reload())
        except Exception as e:  # a bad config file must not take the server down
            log.error("reload failed, keeping the running settings: %s", e)
        service.notify("READY=1")

    def handler() -> None:
        loop.run_in_executor(None, reread)

    try:
        loop.add_signal_handler(signal.SIGHUP, handler)
    except (RuntimeError, ValueError):  # not the main thread (tests run the app in a thread)
        pass


# The bundled web UI: beside the package in a source checkout (editable installs), or where a wheel's data files go.
_UI_PLACES = (Path(__file__).parent.parent / "webui_static", Path(sys.prefix) / "share" / "sdrest" / "webui_static")
WEB_UI = next((d for d in _UI_PLACES if d.is_dir()), _UI_PLACES[0])
# The UI loads nothing from elsewhere: scripts and styles only from this origin, images also as data:/blob: URLs (live
# previews, pasted inputs), and no framing by other sites.
WEB_UI_CSP = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; object-src 'none'; base-uri 'self'; "
    "frame-ancestors 'none'; form-action 'self'"
)


class WebUIFiles(StaticFiles):
    """The web UI's files with `Cache-Control: no-cache`: the browser keeps them but revalidates each with its ETag (a
    304 when unchanged). The URLs carry no version (there is no build step), so this is what keeps a browser from
    running an old module against an upgraded server."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = WEB_UI_CSP
        return response


def create_app(
    settings: Settings, engine: Engine | None = None, reload: Callable[[], Settings] | None = None
) -> Starlette:
    """The server. `engine` is a seam for tests: a stand-in for the generation worker's supervisor. `reload` reads
    the settings again (SIGHUP, `systemctl reload`)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        svc = services.build(settings, engine, metrics)
        svc.webhooks.start()
        await asyncio.to_thread(svc.catalog.scan)
        app.state.services = svc
        threading.Thread(target=svc.probe_engine, name="sdrest-probe", daemon=True).start()
        await asyncio.to_thread(svc.queue.start)
        keeper = asyncio.create_task(service.keep_alive(svc.status_line))
        if reload is not None:
            _on_sighup(svc, reload)
        log.info("sdrest serving %s (%d files in the library)", settings.models_path, len(svc.catalog.entries))
        if not any(e.role in ("checkpoint", "diffusion_model") and not e.broken for e in svc.catalog.entries):
            log.warning(
                "the library has no model that generates images; fetch a starter with: sdrest pull %s --models-dir %s",
                STARTER_FOR_CPU,
                settings.models_path,
            )
        try:
            yield
        finally:
            keeper.cancel()
            svc.webhooks.stop()
            await asyncio.to_thread(svc.queue.stop)
            svc.store.close()

    authenticator = Authenticator(settings)
    if "pam" in authenticator.methods and (problem := system_accounts.shadow_problem()):
        log.error("%s", problem)
    cors = tuple(o.strip() for o in settings.cors_origins.split(",") if o.strip())
    if "*" in cors:
        raise ValueError("cors_origins cannot be '*': browsers would send credentials to any site; list the origins")
    metrics = Metrics(settings.data_dir / "outputs")
    if settings.metrics_port:
        # Public on its own port, for a Prometheus that holds no credentials; the main port's /metrics stays guarded.
        prometheus_client.start_http_server(settings.metrics_port, addr=settings.host, registry=metrics.registry)
    middleware = [
        Middleware(HttpMetrics, metrics=lambda: metrics),
        Middleware(BodyLimit, limit=settings.max_body_bytes),
        Middleware(AccessControl, authenticator=authenticator, cors_origins=cors, shapes=ERROR_SHAPES),
    ]
    if cors:
        # Outermost, so preflight requests are answered before authentication; exact origins, never "*".
        middleware.insert(
            0,
            Middleware(
                CORSMiddleware,
                allow_origins=list(cors),
                allow_credentials=True,
                allow_methods=["*"],
                allow_headers=["Authorization", "Content-Type", "X-API-Key"],
            ),  # fmt: skip
        )
    api = [*generate.routes, *jobs.routes, *system.routes, *models.routes, *auth.routes, *accounts.routes, *docs.routes]
    app = Starlette(
        routes=[
            *metrics_routes.routes,
            Mount("/api/v1", routes=api),
            Mount("/sdapi/v1", routes=sdapi.routes),
            Mount("/v1", routes=openai_images.routes),
            # Last, so the API wins; compressed here only, because SSE streams must not pass through gzip buffers.
            Mount("/", app=GZipMiddleware(WebUIFiles(directory=WEB_UI, html=True, check_dir=False), minimum_size=512)),
        ],
        middleware=middleware,
        exception_handlers={
            Exception: errors.handle,
            HTTPException: errors.handle,
            errors.ApiError: errors.handle,
            JobsError: errors.handle,
        },
        lifespan=lifespan,
    )
    app.state.authenticator = authenticator
    return app
