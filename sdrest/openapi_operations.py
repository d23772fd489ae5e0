"""What the OpenAPI document says of each operation: `OPERATIONS` maps every (method, path template) the app routes to
the struct its handler decodes, the one it answers with, its query parameters and the rest of its contract; with the
links between job operations, the tags and the security schemes. `sdrest.openapi` builds the document from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from sdrest.access import Principal
from sdrest.auth.api_keys import ApiKey
from sdrest.auth.tokens import Tokens
from sdrest.auth.users import User
from sdrest.library.presets import KINDS
from sdrest.library.trash import TrashEntry
from sdrest.openapi_shapes import (
    A1111Embeddings,
    A1111Extra,
    A1111ExtraBatch,
    A1111File,
    A1111Flags,
    A1111Images,
    A1111LatentMode,
    A1111Lora,
    A1111Memory,
    A1111Model,
    A1111PngInfo,
    A1111Progress,
    A1111Sampler,
    A1111Scheduler,
    A1111Upscaler,
    DirectoryList,
    Estimate,
    LibraryStats,
    ModelPage,
    NameList,
    OpenAIImages,
    OpenAIModel,
    OpenAIModelList,
    Preset,
    Pulled,
    RemoteList,
    Rescan,
    RoleList,
    StarterList,
    SystemInfo,
    Template,
    TrashList,
    ValidationReport,
)
from sdrest.routes.accounts import CreatedKey, KeyList, NewKey, NewUser, UserChange, UserList
from sdrest.routes.auth import Login, Refresh
from sdrest.routes.models_requests import (
    SORTS,
    ConvertRequest,
    DownloadRequest,
    HashRequest,
    PullRequest,
    RestoreRequest,
    ValidateRequest,
)
from sdrest.routes.openai_images import ImageOptions
from sdrest.schemas import (
    MAX_SEARCH,
    Health,
    Job,
    JobList,
    Limits,
    Names,
    QueueState,
    Version,
    generate_decoder,
    upscale_decoder,
    video_decoder,
)
from sdrest.views import ModelDetail

# -- the registry -----------------------------------------------------------------------------------------------------

JSON, EVENTS, HTML, TEXT = "application/json", "text/event-stream", "text/html", "text/plain"
IMAGES = ("image/png", "image/jpeg", "image/webp")
MEDIA = (*IMAGES, "video/mp4")  # job outputs: images, animated WebP, MP4
BINARY = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: dict[str, Any]
    description: str = ""
    required: bool = False


@dataclass(frozen=True)
class Op:
    """One operation: what its handler decodes (`request`, a struct; or `body`: `object`, `form` or `text` for bodies
    no struct decodes), what it answers with `status` (`response`: a type, or `media`: the non-JSON media types), and
    the rest of its contract."""

    summary: str
    tag: str
    request: type | None = None
    response: Any = None
    status: int = 200  # 0: no success answer (a fallback that only refuses)
    body: str | None = None
    body_required: bool = True
    forms: tuple[str, ...] = ()  # other media types that carry `request`'s fields
    media: tuple[str, ...] = ()
    query: tuple[Param, ...] = ()
    waits: bool = False  # `?wait=true` answers 200 with the finished job
    description: str = ""
    example: Any = None
    fields: tuple[str, ...] = ()  # the keys a handler reads from a body no struct decodes


# A flag is on when it is `true` or `1`; any other value is off (so the document says string, not boolean).
FLAG = {"type": "string", "examples": ["true", "1"]}
WAIT = Param("wait", FLAG, "`true`: answer when the job has ended (200 with the job) instead of at once (202)")
MULTIPART, URLENCODED = "multipart/form-data", "application/x-www-form-urlencoded"
GENERATE_EXAMPLE = {"prompt": "a lovely cat", "steps": 4, "seed": 42}


def _generate(summary: str, decoder: msgspec.json.Decoder, example: Any = None) -> Op:
    return Op(summary, "generation", decoder.type, Job, status=202, forms=(MULTIPART,), query=(WAIT,), waits=True,
              media=(*IMAGES, "video/mp4"), example=example,
              description="202 with the queued job; with `?wait=true` 200 with the finished job, or its first output "
              "when `Accept` asks for an image. multipart/form-data: files are the input images.")  # fmt: skip


def _task(summary: str, request: type | None = None, body_required: bool = True) -> Op:
    return Op(summary, "models", request, Job, status=202, query=(WAIT,), waits=True, body_required=body_required)


def _a1111(summary: str, response: Any, fields: tuple[str, ...] | None = None) -> Op:
    """An AUTOMATIC1111 operation: its body (when it takes `fields`) is a JSON object no struct decodes, whose other
    keys are ignored; an empty body counts as `{}`."""
    body = None if fields is None else "object"
    return Op(summary, "a1111", response=response, body=body, body_required=False, fields=fields or ())


_A1111_SAMPLING = ("prompt", "negative_prompt", "width", "height", "steps", "cfg_scale", "seed", "batch_size", "n_iter",
                   "sampler_name", "sampler_index", "scheduler", "eta", "override_settings")  # fmt: skip
_A1111_TXT2IMG = (*_A1111_SAMPLING, "enable_hr", "hr_scale", "hr_resize_x", "hr_resize_y", "hr_upscaler",
                  "hr_second_pass_steps", "denoising_strength")  # fmt: skip
_A1111_IMG2IMG = (*_A1111_SAMPLING, "init_images", "denoising_strength", "mask", "mask_blur", "inpainting_mask_invert",
                  "resize_mode")  # fmt: skip
_OPENAI = tuple(f.encode_name for f in msgspec.structs.fields(ImageOptions))


OPERATIONS: dict[tuple[str, str], Op] = {
    # generation and jobs
    ("POST", "/api/v1/generate"): _generate("Queue an image job", generate_decoder, GENERATE_EXAMPLE),
    ("POST", "/api/v1/upscale"): _generate("Queue a standalone upscale", upscale_decoder),
    ("POST", "/api/v1/video"): _generate("Queue a Wan video", video_decoder),
    ("POST", "/api/v1/estimate"): Op(
        "Would a request fit in memory, and about how long would it take",
        "generation",
        generate_decoder.type,
        Estimate,
        query=(
            Param(
                "kind",
                {"type": "string", "enum": ["generate", "upscale", "video"]},
                "the route whose body this is (default generate)",
            ),
        ),
        example=GENERATE_EXAMPLE,
        description="Admits the body as `POST /{kind}` would, queues nothing: the memory it needs where it runs, the "
        "load options chosen to make it fit, and seconds from past jobs of the model.",
    ),  # fmt: skip
    ("GET", "/api/v1/jobs"): Op(
        "List jobs, newest first",
        "jobs",
        response=JobList,
        query=(
            Param("status", {"enum": ["queued", "running", "completed", "failed", "cancelled"]}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            Param("offset", {"type": "integer", "minimum": 0, "maximum": 2**63 - 1, "default": 0}),
            Param("kind", {"type": "string", "examples": ["txt2img,img2img"]}, "only these kinds (a comma list)"),
            Param("model", {"type": "string"}, "only jobs of this library model (its name, as jobs show it)"),
            Param("q", {"type": "string", "maxLength": MAX_SEARCH}, "only jobs whose prompt contains this text"),
        ),
    ),
    ("GET", "/api/v1/jobs/{id}"): Op("A job", "jobs", response=Job),
    ("DELETE", "/api/v1/jobs/{id}"): Op("Delete a finished job and its files", "jobs", status=204),
    ("POST", "/api/v1/jobs/{id}/cancel"): Op("Cancel a queued or running job", "jobs", response=Job),
    ("GET", "/api/v1/jobs/{id}/events"): Op(
        "Follow a job (Server-Sent Events)",
        "jobs",
        media=(EVENTS,),
        query=(Param("heartbeat", {"type": "number", "minimum": 0.05, "maximum": 300, "default": 15}, "seconds"),),
    ),
    ("GET", "/api/v1/jobs/{id}/output/{filename}"): Op(
        "An output file",
        "jobs",
        media=MEDIA,
        query=(
            Param("thumb", FLAG, "`true`: a thumbnail instead of the file"),
            Param("size", {"type": "integer", "minimum": 1, "maximum": 1024, "default": 256}, "the thumbnail's side"),
        ),
    ),
    ("GET", "/api/v1/jobs/{id}/preview"): Op("The latest live preview of a running job", "jobs", media=("image/jpeg",)),
    ("GET", "/api/v1/queue"): Op("The running job and the queued ones", "jobs", response=QueueState),
    # system
    ("GET", "/api/v1/health"): Op("Server and worker status", "system", response=Health),
    ("GET", "/api/v1/system"): Op("CPU, memory, backend, devices, disks, worker", "system", response=SystemInfo),
    ("GET", "/api/v1/version"): Op("Versions and the compute backend", "system", response=Version),
    ("GET", "/api/v1/samplers"): Op("Sampling methods", "system", response=Names),
    ("GET", "/api/v1/schedulers"): Op("Schedulers", "system", response=Names),
    ("GET", "/api/v1/limits"): Op("Size, batch, prompt, queue and body limits", "system", response=Limits),
    ("GET", "/metrics"): Op("Prometheus metrics", "system", media=(TEXT,)),
    # the model library
    ("GET", "/api/v1/models"): Op(
        "The model library",
        "models",
        response=ModelPage,
        query=(
            Param("role", {"type": "string"}),
            Param("architecture", {"type": "string"}),
            Param("search", {"type": "string"}),
            Param("sort", {"enum": list(SORTS), "default": "name"}),
            Param("order", {"enum": ["asc", "desc"]}),
            Param("page", {"type": "integer", "minimum": 1, "default": 1}),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}),
            Param("refresh", FLAG, "`true`: rescan the library first"),
        ),
    ),
    ("GET", "/api/v1/models/{id}"): Op("One model: plan, companions, metadata, hashes", "models", response=ModelDetail),
    ("DELETE", "/api/v1/models/{id}"): Op("Move a model to the trash", "models", response=TrashEntry),
    ("GET", "/api/v1/models/{id}/preview"): Op("The preview image beside a model", "models", media=IMAGES),
    ("GET", "/api/v1/models/roles"): Op("Roles with their file counts", "models", response=RoleList),
    ("GET", "/api/v1/models/directories"): Op("The typed folders", "models", response=DirectoryList),
    ("GET", "/api/v1/models/stats"): Op("Files and bytes by role, disk free", "models", response=LibraryStats),
    ("POST", "/api/v1/models/refresh"): Op("Rescan the library", "models", response=Rescan),
    ("POST", "/api/v1/models/{id}/load"): _task("Load a model (a job on the generation lane)"),
    ("POST", "/api/v1/models/unload"): _task("Unload the model"),
    ("POST", "/api/v1/models/{id}/validate"): Op(
        "Check a model's header and companions", "models", ValidateRequest, ValidationReport, body_required=False
    ),
    ("POST", "/api/v1/models/convert"): _task("Quantize a model to GGUF (a job)", ConvertRequest),
    ("POST", "/api/v1/models/hash"): _task("Hash models (a job)", HashRequest),
    ("POST", "/api/v1/models/download"): _task("Download a model (a job)", DownloadRequest),
    ("GET", "/api/v1/models/remote"): Op(
        "A Hugging Face repository's loadable files",
        "models",
        response=RemoteList,
        query=(
            Param("repo_id", {"type": "string", "minLength": 1}, required=True),
            Param("revision", {"type": "string"}),
        ),
    ),
    ("GET", "/api/v1/models/starters"): Op("The starter models", "models", response=StarterList),
    ("POST", "/api/v1/models/pull"): Op("Download a starter model (jobs)", "models", PullRequest, Pulled, status=202),
    ("GET", "/api/v1/trash"): Op("What the trash holds", "models", response=TrashList),
    ("POST", "/api/v1/trash"): Op("Restore a trash entry", "models", RestoreRequest, TrashEntry),
    # authentication
    ("POST", "/api/v1/auth/login"): Op(
        "Log in for tokens (and session cookies)", "auth", Login, Tokens, forms=(URLENCODED, MULTIPART)
    ),
    ("POST", "/api/v1/auth/refresh"): Op(
        "A new token pair",
        "auth",
        Refresh,
        Tokens,
        body_required=False,
        description="The refresh token in the body, or the refresh cookie.",
    ),
    ("POST", "/api/v1/auth/logout"): Op(
        "Revoke the refresh token's family", "auth", Refresh, status=204, body_required=False
    ),
    ("GET", "/api/v1/auth/me"): Op("Who the request acts as", "auth", response=Principal),
    # accounts (the admin's)
    ("GET", "/api/v1/keys"): Op("API keys, never the keys themselves", "accounts", response=KeyList),
    ("POST", "/api/v1/keys"): Op(
        "Make an API key: its plaintext is answered this once", "accounts", NewKey, CreatedKey, status=201
    ),
    ("DELETE", "/api/v1/keys/{key}"): Op("Revoke a stored key (its id, prefix or name)", "accounts", response=ApiKey),
    ("GET", "/api/v1/users"): Op("Local users", "accounts", response=UserList),
    ("POST", "/api/v1/users"): Op("Add a local user", "accounts", NewUser, User, status=201),
    ("PATCH", "/api/v1/users/{name}"): Op(
        "Change a user's password, role or disabled state; ends their sessions", "accounts", UserChange, User
    ),
    ("DELETE", "/api/v1/users/{name}"): Op("Remove a user; ends their sessions", "accounts", status=204),
    # this document
    ("GET", "/api/v1/openapi.json"): Op("This document", "reference", response=dict[str, Any]),
    ("GET", "/api/v1/docs"): Op("This document as a page", "reference", media=(HTML,)),
    # AUTOMATIC1111
    ("POST", "/sdapi/v1/txt2img"): _a1111("Text to image", A1111Images, _A1111_TXT2IMG),
    ("POST", "/sdapi/v1/img2img"): _a1111("Image to image, inpainting", A1111Images, _A1111_IMG2IMG),
    ("POST", "/sdapi/v1/extra-single-image"): _a1111(
        "Upscale one image", A1111Extra, ("image", "upscaler_1", "upscaling_resize")
    ),
    ("POST", "/sdapi/v1/extra-batch-images"): _a1111(
        "Upscale images", A1111ExtraBatch, ("imageList", "upscaler_1", "upscaling_resize")
    ),
    ("POST", "/sdapi/v1/png-info"): _a1111("An image's infotext", A1111PngInfo, ("image",)),
    ("GET", "/sdapi/v1/progress"): Op(
        "Progress of the running job",
        "a1111",
        response=A1111Progress,
        query=(Param("skip_current_image", FLAG, "`true`: without the live preview"),),
    ),
    ("POST", "/sdapi/v1/interrupt"): _a1111("Cancel the running job", None),
    ("POST", "/sdapi/v1/skip"): _a1111("Cancel the running job", None),
    ("GET", "/sdapi/v1/options"): _a1111("Options", dict[str, Any]),
    ("POST", "/sdapi/v1/options"): _a1111(
        "Store options (a new checkpoint is loaded)",
        None,
        ("sd_model_checkpoint", "sd_vae", "CLIP_stop_at_last_layers", "samples_format"),
    ),
    ("GET", "/sdapi/v1/sd-models"): _a1111("Generating models", list[A1111Model]),
    ("GET", "/sdapi/v1/sd-vae"): _a1111("VAEs", list[A1111File]),
    ("GET", "/sdapi/v1/sd-modules"): _a1111("Text encoders", list[A1111File]),
    ("GET", "/sdapi/v1/loras"): _a1111("LoRAs", list[A1111Lora]),
    ("GET", "/sdapi/v1/embeddings"): _a1111("Embeddings", A1111Embeddings),
    ("GET", "/sdapi/v1/samplers"): _a1111("Samplers", list[A1111Sampler]),
    ("GET", "/sdapi/v1/schedulers"): _a1111("Schedulers", list[A1111Scheduler]),
    ("GET", "/sdapi/v1/upscalers"): _a1111("Upscalers", list[A1111Upscaler]),
    ("GET", "/sdapi/v1/latent-upscale-modes"): _a1111("Latent hires modes", list[A1111LatentMode]),
    ("GET", "/sdapi/v1/memory"): _a1111("RAM", A1111Memory),
    ("GET", "/sdapi/v1/cmd-flags"): _a1111("The settings A1111 clients look for", A1111Flags),
    ("POST", "/sdapi/v1/refresh-checkpoints"): _a1111("Rescan the library", None),
    # OpenAI
    ("POST", "/v1/images/generations"): Op(
        "Generate images",
        "openai",
        response=OpenAIImages,
        body="object",
        fields=_OPENAI,
        media=(EVENTS,),
        description="`stream: true` answers with events. Native fields (`steps`, `seed`, ...) are taken as extra "
        "fields, or in `<sd_cpp_extra_args>{...}</sd_cpp_extra_args>` in the prompt.",
    ),
    ("POST", "/v1/images/edits"): Op(
        "Edit images", "openai", response=OpenAIImages, body="form", media=(EVENTS,), fields=("image", "mask", *_OPENAI)
    ),
    ("POST", "/v1/images/variations"): Op(
        "Variations of an image", "openai", response=OpenAIImages, body="form", fields=("image", *_OPENAI)
    ),
    ("GET", "/v1/models"): Op("Generating models", "openai", response=OpenAIModelList),
    ("GET", "/v1/models/{id}"): Op("A generating model", "openai", response=OpenAIModel),
    ("GET", "/v1/files/{job_id}/{filename}"): Op(
        "An image behind a signed URL",
        "openai",
        media=IMAGES,
        query=(
            Param("expires", {"type": "integer"}, "Unix seconds", required=True),
            Param("sig", {"type": "string"}, "the signature", required=True),
        ),
    ),
    **{
        (method, "/v1/{rest}"): Op("Anything else under /v1: 404, or 405 for a wrong method", "openai", status=0)
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
    },
    ("OPTIONS", "/v1/{rest}"): Op("The methods a /v1 path allows (in Allow)", "openai", status=204),
}


def _stored(kind: str) -> dict[tuple[str, str], Op]:
    """The operations on presets (JSON objects) or prompt templates (text; an empty body is an empty template)."""
    answer = Preset if kind == "presets" else Template
    body, required = ("object", True) if kind == "presets" else ("text", False)
    return {
        ("GET", f"/api/v1/{kind}"): Op(f"The {kind}' names", "presets", response=NameList),
        ("GET", f"/api/v1/{kind}/{{name}}"): Op("Read one", "presets", response=answer),
        ("POST", f"/api/v1/{kind}/{{name}}"): Op(
            "Create one (409 if it exists)", "presets", response=answer, status=201, body=body, body_required=required
        ),
        ("PUT", f"/api/v1/{kind}/{{name}}"): Op(
            "Replace one (404 if it does not exist)", "presets", response=answer, body=body, body_required=required
        ),
        ("DELETE", f"/api/v1/{kind}/{{name}}"): Op("Delete one", "presets", status=204),
    }


for _kind in KINDS:
    OPERATIONS |= _stored(_kind)

# Where an answer carries a job's id, the operations that take it (OpenAPI links: clients and fuzzers follow them).
_ID = {"id": "$response.body#/id"}
JOB_LINKS: dict[str, tuple[str, str, dict[str, str]]] = {
    "GetJob": ("GET", "/api/v1/jobs/{id}", _ID),
    "CancelJob": ("POST", "/api/v1/jobs/{id}/cancel", _ID),
    "DeleteJob": ("DELETE", "/api/v1/jobs/{id}", _ID),
    "GetOutput": (
        "GET",
        "/api/v1/jobs/{id}/output/{filename}",
        _ID | {"filename": "$response.body#/outputs/0/filename"},
    ),
}

TAGS = {
    "generation": "Queue images, upscales and videos (native API)",
    "jobs": "Jobs: status, outputs, events, the queue",
    "system": "Health, versions, limits",
    "models": "The model library and its management (the administrator's)",
    "presets": "Presets and prompt templates",
    "auth": "Logins and tokens",
    "accounts": "API keys and local users (the administrator's)",
    "reference": "This document",
    "a1111": "AUTOMATIC1111-compatible API (its shapes and errors)",
    "openai": "OpenAI Images-compatible API (its shapes and errors)",
}

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "an API key (sdr_…) or an access token"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "basic": {"type": "http", "scheme": "basic", "description": "an API key as the password, or a user's password"},
    "cookie": {"type": "apiKey", "in": "cookie", "name": "sdrest_session",
               "description": "the session cookie login sets; unsafe methods also need a same-origin Origin"},
}  # fmt: skip
