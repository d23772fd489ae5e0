"""Deleting models: a delete moves the file (and its sidecars) into the trash under the data directory, which
can be listed and restored from; a loaded model is refused until it is unloaded.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sdrest.errors import Conflict, Invalid, decode_body, json_response
from sdrest.library.names import BadName
from sdrest.library.trash import Trash, TrashError
from sdrest.routes.jobs import services
from sdrest.routes.models_library import find_model
from sdrest.routes.models_requests import RestoreRequest
from sdrest.services import Services


def _trash(svc: Services) -> Trash:
    return Trash(svc.settings.data_dir / "trash", svc.catalog.models_dir)


async def delete_model(request: Request) -> Response:
    svc = services(request)

    def move() -> dict[str, Any]:
        entry = find_model(svc, request.path_params["id"])
        loaded = svc.queue.loaded_plan() or {}
        if entry.path in loaded.values():
            raise Conflict(f"{entry.name} is loaded; unload it first (POST /api/v1/models/unload)")
        record = _trash(svc).put(entry)
        svc.views.invalidate()
        svc.catalog.scan()
        return msgspec.to_builtins(record)

    return json_response(await run_in_threadpool(move))


async def list_trash(request: Request) -> Response:
    return json_response({"trash": await run_in_threadpool(_trash(services(request)).list)})


async def restore(request: Request) -> Response:
    svc = services(request)
    body = decode_body(await request.body(), RestoreRequest)

    def put_back() -> dict[str, Any]:
        try:
            record = _trash(svc).restore(body.id)
        except (TrashError, BadName) as e:
            raise Invalid(str(e), field="$.id") from e
        svc.catalog.scan()
        return msgspec.to_builtins(record)

    return json_response(await run_in_threadpool(put_back))
