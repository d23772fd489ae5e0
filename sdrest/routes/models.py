"""Model management (`/api/v1/models…`, `/api/v1/trash`, presets and prompt templates): browse, inspect, load and
unload, validate, convert, hash, download, delete and restore. All of it is the administrator's once auth exists.
This module holds the family's route table; the handlers live beside it: `models_library` (listing, detail, the
lookup), `models_tasks` (load, unload, validate, convert, hash), `models_downloads` (the hub, URLs, starters),
`models_trash` (delete, restore), `presets` (presets and prompt templates), and `models_requests` (the bodies).

Every name or id a client sends resolves inside the models directory (library lookups never take paths; file names
go through `library.names.inside`); long operations are jobs on the side lane, loads and unloads jobs on the
generation lane, so none of them races a generation.
"""

from __future__ import annotations

from starlette.routing import Route

from sdrest.library.presets import KINDS
from sdrest.routes.models_downloads import download, list_starters, pull, remote
from sdrest.routes.models_library import directories, get_model, list_models, model_preview, refresh, roles, stats
from sdrest.routes.models_tasks import convert, hash_models, load, unload, validate
from sdrest.routes.models_trash import delete_model, list_trash, restore
from sdrest.routes.presets import preset_route

# Order matters: `/models/{id:path}` would match every fixed path below `/models/`, so it comes after them.
routes = [
    Route("/models", list_models, methods=["GET"]),
    Route("/models/roles", roles, methods=["GET"]),
    Route("/models/directories", directories, methods=["GET"]),
    Route("/models/stats", stats, methods=["GET"]),
    Route("/models/refresh", refresh, methods=["POST"]),
    Route("/models/unload", unload, methods=["POST"]),
    Route("/models/convert", convert, methods=["POST"]),
    Route("/models/hash", hash_models, methods=["POST"]),
    Route("/models/download", download, methods=["POST"]),
    Route("/models/remote", remote, methods=["GET"]),
    Route("/models/pull", pull, methods=["POST"]),
    Route("/models/starters", list_starters, methods=["GET"]),
    Route("/models/{id:path}/load", load, methods=["POST"]),
    Route("/models/{id:path}/validate", validate, methods=["POST"]),
    Route("/models/{id:path}/preview", model_preview, methods=["GET"]),
    Route("/models/{id:path}", get_model, methods=["GET"]),
    Route("/models/{id:path}", delete_model, methods=["DELETE"]),
    Route("/trash", list_trash, methods=["GET"]),
    Route("/trash", restore, methods=["POST"]),
    *(Route(f"/{kind}", preset_route, methods=["GET"]) for kind in KINDS),
    *(Route(f"/{kind}/{{name}}", preset_route, methods=["GET", "POST", "PUT", "DELETE"]) for kind in KINDS),
]
