"""Presets and prompt templates (`/api/v1/presets`, `/api/v1/prompts`, `/api/v1/neg_prompts`, one route family per
kind in `library.presets.KINDS`): list, read, create, replace and delete named entries kept in the models directory.
A preset is a JSON object of generation fields; a prompt template is plain text.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sdrest.errors import Conflict, Invalid, NotFound, json_response
from sdrest.library.names import BadName
from sdrest.library.presets import PresetError, Store
from sdrest.routes.jobs import services
from sdrest.services import Services


def _kind(request: Request) -> str:
    return request.url.path.removeprefix("/api/v1/").split("/", 1)[0]


def _store(svc: Services, request: Request) -> Store:
    return Store(svc.catalog.models_dir, _kind(request))


def _preset_call(svc: Services, request: Request, action: str, value: Any = None) -> Any:
    store = _store(svc, request)
    name = request.path_params.get("name", "")
    try:
        if action == "list":
            return {"names": store.names()}
        if action == "read":
            return {"name": name, "value": store.read(name)}
        if action in ("create", "update"):
            store.write(name, value, create=action == "create")
            return {"name": name, "value": value}
        store.delete(name)
        return None
    except BadName as e:
        raise Invalid(str(e), field="name") from e
    except FileNotFoundError as e:
        raise NotFound(str(e)) from e
    except FileExistsError as e:
        raise Conflict(str(e)) from e
    except PresetError as e:
        raise Invalid(str(e), field="$") from e


async def preset_route(request: Request) -> Response:
    svc = services(request)
    method = request.method
    name = request.path_params.get("name")
    if name is None:
        return json_response(await run_in_threadpool(_preset_call, svc, request, "list"))
    if method == "GET":
        return json_response(await run_in_threadpool(_preset_call, svc, request, "read"))
    if method == "DELETE":
        await run_in_threadpool(_preset_call, svc, request, "delete")
        return Response(status_code=204)
    raw = await request.body()
    if _kind(request) == "presets":
        try:
            value: Any = msgspec.json.decode(raw)
        except msgspec.DecodeError as e:
            raise Invalid(f"a preset is a JSON object: {e}", field="$") from e
        if not isinstance(value, dict):
            raise Invalid("a preset is a JSON object of generation fields", field="$")
    else:
        value = raw.decode("utf-8", "replace")
    action = "create" if method == "POST" else "update"
    status = 201 if method == "POST" else 200
    return json_response(await run_in_threadpool(_preset_call, svc, request, action, value), status=status)
