"""The OpenAI Images API under `/v1`: generations (optionally streamed), edits, variations, the model list, and the
signed image URLs it hands out.

Each request becomes a native `GenerateRequest` and goes through the one job queue. Every error on these routes
answers in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, never in the native one.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import io
import json
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse
from starlette.routing import Match, Route

from sdrest import images
from sdrest.auth.tokens import load_or_create_secret
from sdrest.errors import ApiError, EngineUnavailable, from_domain, from_validation
from sdrest.jobs.admission import GENERATORS, choose_model
from sdrest.jobs.errors import JobsError
from sdrest.jobs.events import TERMINAL
from sdrest.jobs.modes import REF_IMAGE_ARCHITECTURES
from sdrest.jobs.store import COMPLETED, FINISHED, JobRecord
from sdrest.library.architectures import ARCHITECTURES
from sdrest.library.catalog import ModelFile, UnknownModel
from sdrest.library.plan import PlanError, make_plan
from sdrest.routes.generate import wait_for_job
from sdrest.routes.jobs import owner, services
from sdrest.schemas import MAX_PROMPT, GenerateRequest, Struct
from sdrest.services import Services
from sdrest.settings import Settings

log = logging.getLogger("sdrest.openai")

PUBLIC_PREFIXES = ("/v1/files/",)  # signed image URLs: fetched without credentials (browsers, LibreChat)
URL_SECONDS = 3600  # how long an image URL stays valid, as OpenAI's do
HEARTBEAT_SECONDS = 15.0
VARIATION_STRENGTH = 0.6
EDIT_MIN_SIDE = 64

# -- errors -----------------------------------------------------------------------------------------------------------


class OpenAIError(Exception):
    """An error in OpenAI's shape; `param` names the request field to fix."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers

    @property
    def type(self) -> str:
        if self.status >= 500:
            return "server_error"
        return {401: "authentication_error", 403: "permission_error", 429: "requests"}.get(
            self.status, "invalid_request_error"
        )

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> Response:
        return _json(self.body(), self.status, self.headers)


# Native fields that OpenAI clients know under another name.
_PARAMS = {"width": "size", "height": "size", "batch_count": "n", "init_image": "image", "ref_images": "image"}
_CODES = {"validation_error": "invalid_value", "queue_full": "rate_limit_exceeded"}


def from_native(error: ApiError | JobsError) -> OpenAIError:
    """A native or jobs-layer error as OpenAI reports it: validation errors are 400s, `param` is the OpenAI field."""
    api = from_domain(error) if isinstance(error, JobsError) else error
    name = re.split(r"[.\[]", (api.field or "").removeprefix("$").removeprefix("."), maxsplit=1)[0]
    return OpenAIError(
        400 if api.status == 422 else api.status,
        api.message,
        param=_PARAMS.get(name, name) or None,
        code=_CODES.get(api.code, api.code),
        # An engine that does not load stays so: OpenAI's clients would otherwise retry a 503 twice.
        headers={"X-Should-Retry": "false"} if isinstance(api, EngineUnavailable) else None,
    )


def openai_error(error: ApiError) -> Response:
    """A native error (the auth middleware's 401/403) in OpenAI's shape."""
    return from_native(error).response()


def _unknown(name: str) -> OpenAIError:
    return OpenAIError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _no_model(name: str, why: str) -> OpenAIError:
    return OpenAIError(404, f"The model {name!r} does not exist ({why})", param="model", code="model_not_found")


def _missing(name: str) -> OpenAIError:
    return OpenAIError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")


Endpoint = Callable[[Request], Awaitable[Response]]


def openai_errors(endpoint: Endpoint) -> Endpoint:
    """Render every error `endpoint` raises in OpenAI's shape."""

    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except OpenAIError as e:
            return e.response()
        except (ApiError, JobsError) as e:
            return from_native(e).response()
        except HTTPException as e:  # a malformed multipart body
            return OpenAIError(e.status_code, str(e.detail)).response()
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return OpenAIError(500, "internal server error").response()

    return wrapped


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers)


# -- requests ---------------------------------------------------------------------------------------------------------


class ImageOptions(Struct, kw_only=True):
    """The OpenAI fields of a generation, edit or variation. Those sd.cpp has no use for (quality, style, background,
    moderation, user, ...) are accepted and ignored, as a client written for OpenAI sends them."""

    prompt: Annotated[str, Meta(max_length=MAX_PROMPT)] | None = None
    model: str | None = None
    n: Annotated[int, Meta(ge=1, le=64)] | None = None
    size: str | None = None
    response_format: Literal["b64_json", "url"] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[int, Meta(ge=0, le=100)] | None = None
    stream: bool | None = None
    partial_images: Annotated[int, Meta(ge=0, le=3)] | None = None
    quality: str | None = None
    background: str | None = None
    style: str | None = None
    moderation: str | None = None
    input_fidelity: str | None = None
    user: str | None = None
    safety_identifier: str | None = None


_OPTIONS = frozenset(f.name for f in msgspec.structs.fields(ImageOptions))
# Native fields a client may add (as extra body fields or in <sd_cpp_extra_args>); the others the mapping sets.
_RESERVED = {"prompt", "model", "init_image", "mask", "ref_images", "preview", "preset"}
_NATIVE = frozenset(f.name for f in msgspec.structs.fields(GenerateRequest)) - _RESERVED - _OPTIONS
_ALIASES = {"sampler": "sampling_method", "sample_method": "sampling_method", "sample_steps": "steps"}
_GUIDANCE = {"txt_cfg": "cfg_scale", "distilled_guidance": "guidance"}
_EXTRA_ARGS = re.compile(r"<sd_cpp_extra_args>(.*?)</sd_cpp_extra_args>", re.DOTALL)
_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")


def split_fields(data: dict[str, Any], strict: bool) -> tuple[ImageOptions, dict[str, Any]]:
    """A body's OpenAI options, and its native extras (`steps`, `seed`, ...) under their native names."""
    options: dict[str, Any] = {}
    extras: dict[str, Any] = {}
    for key, value in data.items():
        if key in _OPTIONS:
            options[key] = value
        elif (native := _ALIASES.get(key, key)) in _NATIVE:
            extras[native] = value
        else:
            raise _unknown(key)
    try:
        return msgspec.convert(options, ImageOptions, strict=strict), extras
    except msgspec.ValidationError as e:
        raise from_native(from_validation(e)) from e


def extra_args(prompt: str) -> tuple[str, dict[str, Any]]:
    """sd.cpp's `<sd_cpp_extra_args>{...}</sd_cpp_extra_args>` taken out of a prompt, for clients that cannot send
    extra fields: the prompt without it, and its fields under native names (sd-server's `sample_params` nesting
    too)."""
    found: dict[str, Any] = {}
    for match in _EXTRA_ARGS.finditer(prompt):
        try:
            args = json.loads(match.group(1))
        except ValueError as e:
            raise OpenAIError(400, f"<sd_cpp_extra_args> is not valid JSON: {e}", param="prompt") from None
        if not isinstance(args, dict):
            raise OpenAIError(400, "<sd_cpp_extra_args> must hold a JSON object", param="prompt")
        found.update(_flatten(args))
    return _EXTRA_ARGS.sub("", prompt).strip(), found


def _flatten(args: dict[str, Any]) -> dict[str, Any]:
    items = [(k, v) for k, v in args.items() if k != "sample_params"]
    unknown: list[str] = []
    sample = args.get("sample_params", {})
    if not isinstance(sample, dict):
        unknown.append("sample_params")
        sample = {}
    for key, value in sample.items():
        if key != "guidance" or not isinstance(value, dict):
            items.append((key, value))
            continue
        for name, number in value.items():
            if name in _GUIDANCE:
                items.append((_GUIDANCE[name], number))
            else:
                unknown.append(f"sample_params.guidance.{name}")
    flat: dict[str, Any] = {}
    for key, value in items:
        native = _ALIASES.get(key, key)
        if native in _NATIVE:
            flat[native] = value
        else:
            unknown.append(key)
    if unknown:
        raise OpenAIError(
            400,
            f"<sd_cpp_extra_args>: sdrest does not take {', '.join(unknown)}",
            param="prompt",
            code="unknown_parameter",
        )
    return flat


def _prompt(options: ImageOptions, required: bool = True) -> tuple[str, dict[str, Any]]:
    if options.prompt is None or (required and not options.prompt.strip()):
        if required:
            raise _missing("prompt")
        return "", {}
    return extra_args(options.prompt)


def parse_size(size: str | None) -> tuple[int, int] | None:
    """`WxH` as (width, height); None for `auto` (the model's default, or an edit's input size)."""
    if size is None or size == "auto":
        return None
    match = _SIZE.fullmatch(size.strip().lower())
    if match is None:
        raise OpenAIError(
            400, f"Invalid size {size!r}: give WIDTHxHEIGHT (e.g. 512x512) or auto.", param="size", code="invalid_value"
        )
    return int(match[1]), int(match[2])


def _input_size(data: bytes | str, architecture: str | None, settings: Settings) -> tuple[int, int] | None:
    """An input image's size as an output size the model can make: within the limits, a multiple of its size step."""
    arch = ARCHITECTURES.get(architecture or "")
    if arch is None or isinstance(data, str):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None  # admission says what is wrong with it
    scale = min(1.0, math.sqrt(settings.max_pixels / (width * height)), settings.max_side / max(width, height))
    step = arch.size_multiple
    low = -(-EDIT_MIN_SIDE // step) * step
    return max(low, int(width * scale) // step * step), max(low, int(height * scale) // step * step)


def _model(svc: Services, name: str | None) -> tuple[str | None, str | None]:
    """The library name of the model a request names (404 when there is none) and its architecture; without a name,
    those of the model admission would choose, if it can. Reads the library: call it on a thread."""
    if name:
        try:
            entry: ModelFile = svc.catalog.get(name, roles=GENERATORS)
        except UnknownModel as e:
            raise _no_model(name, str(e)) from e
    else:
        try:
            entry = choose_model(svc.catalog, None, svc.queue.loaded_plan())
        except JobsError:
            return None, None  # admission refuses it with the reason
    if entry.broken:
        return entry.name, None
    try:
        return entry.name, make_plan(entry, svc.catalog.entries).architecture  # a sidecar may name the architecture
    except PlanError:
        return entry.name, entry.architecture


def _native(options: ImageOptions, prompt: str, model: str | None, size: tuple[int, int] | None, **fields: Any) -> dict:
    native: dict[str, Any] = {"prompt": prompt, "model": model, **fields}
    if size is not None:
        native["width"], native["height"] = size
    if options.n is not None:
        native["batch_count"] = options.n
    if options.output_format is not None:
        native["output_format"] = options.output_format
    if options.stream and options.partial_images:
        native["preview"] = {"method": "proj", "interval": 1}  # cheap latent projections; the stream picks a few
    return native


def _request(native: dict[str, Any], *extras: dict[str, Any], strict: bool) -> GenerateRequest:
    """The native request: the mapped fields, then the client's extras over them (the prompt's last)."""
    for more in extras:
        native.update(more)
    try:
        return msgspec.convert(native, GenerateRequest, strict=strict)
    except msgspec.ValidationError as e:
        raise from_native(from_validation(e)) from e


async def _form(request: Request) -> tuple[dict[str, Any], dict[str, list[bytes | str]]]:
    """A multipart body's fields, and its images (uploads as bytes; `image[]` is `image`)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OpenAIError(400, "this route takes multipart/form-data (the images as files)")
    limit = services(request).settings.max_body_bytes
    form = await request.form(max_files=32, max_fields=200, max_part_size=limit)
    fields: dict[str, Any] = {}
    files: dict[str, list[bytes | str]] = {}
    for key, value in form.multi_items():
        name = key.removesuffix("[]")
        if isinstance(value, UploadFile):
            files.setdefault(name, []).append(await value.read())
        elif name in ("image", "mask"):
            files.setdefault(name, []).append(value)  # base64 or a data URL
        elif value.startswith(("{", "[")):
            try:
                fields[key] = json.loads(value)  # loras, hires, ... as JSON
            except ValueError:
                fields[key] = value
        else:
            fields[key] = value  # numbers and booleans are converted from text
    return fields, files


def _image(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode()


# -- routes -----------------------------------------------------------------------------------------------------------


def _ready(request: Request) -> Services:
    svc = services(request)
    if svc.build_error is not None:
        raise EngineUnavailable(svc.build_error)
    return svc


async def generations(request: Request) -> Response:
    svc = _ready(request)
    try:
        data = msgspec.json.decode(await request.body())
    except msgspec.DecodeError as e:
        raise from_native(from_validation(e)) from e
    if not isinstance(data, dict):
        raise OpenAIError(400, "the body must be a JSON object")
    options, extras = split_fields(data, strict=True)
    prompt, from_prompt = _prompt(options)
    model = (await run_in_threadpool(_model, svc, options.model))[0] if options.model else None
    native = _native(options, prompt, model, parse_size(options.size))
    return await _answer(request, svc, _request(native, extras, from_prompt, strict=True), options, "image_generation")


async def edits(request: Request) -> Response:
    svc = _ready(request)
    fields, files = await _form(request)
    pictures, masks = files.pop("image", []), files.pop("mask", [])
    if files:
        raise _unknown(next(iter(files)))
    if not pictures:
        raise _missing("image")
    if len(masks) > 1:
        raise OpenAIError(400, "give one mask", param="mask")
    options, extras = split_fields(fields, strict=False)
    prompt, from_prompt = _prompt(options)
    model, arch = await run_in_threadpool(_model, svc, options.model)
    size = parse_size(options.size) or await run_in_threadpool(_input_size, pictures[0], arch, svc.settings)
    encoded = [_image(p) for p in pictures]
    mode: dict[str, Any]
    if masks:  # inpainting: transparent pixels of the mask are repainted
        mode = {"init_image": encoded[0], "mask": _image(masks[0])}
        if len(encoded) > 1:
            mode["ref_images"] = encoded[1:]
    elif len(encoded) > 1 or arch in REF_IMAGE_ARCHITECTURES:
        mode = {"ref_images": encoded}
    else:
        mode = {"init_image": encoded[0]}
    native = _native(options, prompt, model, size, **mode)
    return await _answer(request, svc, _request(native, extras, from_prompt, strict=False), options, "image_edit")


async def variations(request: Request) -> Response:
    svc = _ready(request)
    fields, files = await _form(request)
    pictures = files.pop("image", [])
    if files:
        raise _unknown(next(iter(files)))
    if len(pictures) != 1:
        raise _missing("image") if not pictures else OpenAIError(400, "give one image", param="image")
    options, extras = split_fields(fields, strict=False)
    if options.stream:
        raise OpenAIError(400, "variations are not streamed", param="stream")
    prompt, from_prompt = _prompt(options, required=False)
    model, arch = await run_in_threadpool(_model, svc, options.model)
    size = parse_size(options.size) or await run_in_threadpool(_input_size, pictures[0], arch, svc.settings)
    native = _native(options, prompt, model, size, init_image=_image(pictures[0]), strength=VARIATION_STRENGTH)
    return await _answer(request, svc, _request(native, extras, from_prompt, strict=False), options, "image_generation")


async def _answer(
    request: Request, svc: Services, native: GenerateRequest, options: ImageOptions, kind: str
) -> Response:
    """Queue the job, wait for it and answer with its images (or stream its progress as events)."""
    job, _ = await run_in_threadpool(svc.submit, native, owner(request))
    if options.stream:
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(_events(svc, job, options, kind), media_type="text/event-stream", headers=headers)
    current = await wait_for_job(svc, job)
    if current.status != COMPLETED:
        raise _job_error(current)
    if options.response_format == "url":
        secret = await _secret(request)
        expires = int(time.time()) + URL_SECONDS
        data = [{"url": _signed_url(request, secret, current.id, o.filename, expires)} for o in current.outputs]
    else:
        data = [{"b64_json": b64} for b64 in await run_in_threadpool(_read_outputs, svc, current)]
    body: dict[str, Any] = {"created": int(current.finished_at or time.time()), "data": data, **_echo(current, options)}
    return _json(body)


def _echo(job: JobRecord, options: ImageOptions) -> dict[str, Any]:
    """What newer OpenAI responses repeat of the request: the format, size, quality and background used."""
    first = job.outputs[0] if job.outputs else None
    echo: dict[str, Any] = {
        "background": "opaque",
        "output_format": getattr(job.spec, "output_format", "png"),
        "size": f"{first.width}x{first.height}" if first else options.size or "auto",
    }
    if options.quality in ("low", "medium", "high"):
        echo["quality"] = options.quality
    return echo


def _job_error(job: JobRecord) -> OpenAIError:
    error = job.error or {}
    message = error.get("message") or f"the job was {job.status}"
    # The same request would fail the same way: OpenAI's clients would otherwise retry a 500 twice.
    return OpenAIError(500, message, code=error.get("code") or job.status, headers={"X-Should-Retry": "false"})


def _read_outputs(svc: Services, job: JobRecord) -> list[str]:
    return [
        base64.b64encode(svc.queue.output(job.id, output.filename)[2].read_bytes()).decode() for output in job.outputs
    ]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: ".encode() + msgspec.json.encode(data) + b"\n\n"


_USAGE = {"input_tokens": 0, "input_tokens_details": {"image_tokens": 0, "text_tokens": 0}, "output_tokens": 0,
          "total_tokens": 0}  # fmt: skip


async def _events(svc: Services, job: JobRecord, options: ImageOptions, kind: str) -> AsyncIterator[bytes]:
    """OpenAI's image stream: up to `partial_images` of the job's live previews, evenly spread over its steps, then
    one `completed` event per image (or an `error` event)."""
    subscription = svc.hub.subscribe(job.id)
    try:
        wanted = options.partial_images or 0
        steps = getattr(job.spec, "steps", 1)
        marks = [max(1, round(steps * (i + 1) / (wanted + 1))) for i in range(wanted)]
        fmt = getattr(job.spec, "output_format", "png")
        size = f"{getattr(job.spec, 'width', 0)}x{getattr(job.spec, 'height', 0)}"
        shared = {"size": size, "quality": options.quality or "auto", "background": "opaque", "output_format": fmt}
        current = await run_in_threadpool(svc.queue.get, job.id)
        while current.status not in FINISHED:
            try:
                event = await asyncio.wait_for(subscription.queue.get(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if event.type == "preview" and marks and event.data.get("step", 0) >= marks[0]:
                marks.pop(0)
                partial = await run_in_threadpool(_reencode, event.data["image"], fmt)
                yield _sse(f"{kind}.partial_image", {
                    "type": f"{kind}.partial_image", "b64_json": partial, "created_at": int(time.time()),
                    "partial_image_index": wanted - len(marks) - 1, **shared,
                })  # fmt: skip
            elif event.type in TERMINAL:
                current = await run_in_threadpool(svc.queue.get, job.id)
        if current.status != COMPLETED:
            yield _sse("error", {"type": "error", **_job_error(current).body()})
            return
        outputs = await run_in_threadpool(_read_outputs, svc, current)
        for output, b64 in zip(current.outputs, outputs, strict=True):
            yield _sse(f"{kind}.completed", {
                "type": f"{kind}.completed", "b64_json": b64, "created_at": int(current.finished_at or time.time()),
                **shared, "size": f"{output.width}x{output.height}", "usage": _USAGE,
            })  # fmt: skip
    finally:
        svc.hub.unsubscribe(job.id, subscription)


def _reencode(data_url: str, fmt: str) -> str:
    """A preview (a JPEG data URL) as base64 in the requested format."""
    b64 = data_url.partition(",")[2]
    if fmt == "jpeg":
        return b64
    with Image.open(io.BytesIO(base64.b64decode(b64))) as preview:
        return base64.b64encode(images.encode_image(preview, fmt, None)).decode()


# -- image URLs -------------------------------------------------------------------------------------------------------


async def _secret(request: Request) -> bytes:
    """The server's URL-signing secret (`<data_dir>/url-secret`, made on first use)."""
    secret: bytes | None = getattr(request.app.state, "openai_url_secret", None)
    if secret is None:
        path = services(request).settings.data_dir / "url-secret"
        secret = await run_in_threadpool(load_or_create_secret, path)
        request.app.state.openai_url_secret = secret
    return secret


def _signature(secret: bytes, job_id: str, filename: str, expires: int) -> str:
    return hmac.new(secret, f"{job_id}\n{filename}\n{expires}".encode(), hashlib.sha256).hexdigest()


def _signed_url(request: Request, secret: bytes, job_id: str, filename: str, expires: int) -> str:
    """An absolute URL of an output that works without credentials until `expires` (Unix seconds)."""
    url = request.url_for("openai_get_file", job_id=job_id, filename=filename)
    return str(url.include_query_params(expires=expires, sig=_signature(secret, job_id, filename, expires)))


async def get_file(request: Request) -> Response:
    """An output through a signed URL: the signature, not the caller's credentials, is the permission."""
    job_id, filename = request.path_params["job_id"], request.path_params["filename"]
    try:
        expires = int(request.query_params.get("expires", ""))
    except ValueError:
        raise OpenAIError(403, "this image URL is not signed") from None
    expected = _signature(await _secret(request), job_id, filename, expires)
    if not hmac.compare_digest(request.query_params.get("sig", "").encode(), expected.encode()):
        raise OpenAIError(403, "this image URL's signature is not valid")
    remaining = expires - int(time.time())
    if remaining <= 0:
        raise OpenAIError(403, "this image URL has expired")
    _, output, path = await run_in_threadpool(services(request).queue.output, job_id, filename)
    headers = {"Cache-Control": f"private, max-age={remaining}"}
    return FileResponse(path, media_type=output.media_type, headers=headers)


# -- models -----------------------------------------------------------------------------------------------------------


def _model_object(entry: ModelFile) -> dict[str, Any]:
    return {"id": entry.name, "object": "model", "created": entry.mtime_ns // 1_000_000_000, "owned_by": "sdrest"}


async def list_models(request: Request) -> Response:
    entries = sorted(services(request).catalog.entries, key=lambda e: e.name)
    data = [_model_object(e) for e in entries if e.role in GENERATORS and not e.broken]
    return _json({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    name = request.path_params["id"]
    try:
        entry = await run_in_threadpool(services(request).catalog.get, name, GENERATORS)
    except UnknownModel as e:
        raise _no_model(name, str(e)) from e
    if entry.broken:
        raise _no_model(name, f"it cannot be read: {entry.error}")
    return _json(_model_object(entry))


# -- routing ----------------------------------------------------------------------------------------------------------


async def fallback(request: Request) -> Response:
    """What no route of this family takes: OPTIONS (204 with `Allow`; SillyTavern pings with it), another method (405)
    or another path (404), in OpenAI's shape."""
    allowed = {m for route in routes[:-1] if route.matches(request.scope)[0] != Match.NONE for m in route.methods or ()}
    if not allowed:
        raise OpenAIError(404, f"no route {request.url.path}", code="not_found")
    allow = ", ".join(sorted(allowed | {"OPTIONS"}))
    if request.method == "OPTIONS":
        return Response(status_code=204, headers={"Allow": allow})
    raise OpenAIError(405, f"{request.method} is not allowed here", headers={"Allow": allow})


_ENDPOINTS: list[tuple[str, Endpoint, list[str]]] = [
    ("/images/generations", generations, ["POST"]),
    ("/images/edits", edits, ["POST"]),
    ("/images/variations", variations, ["POST"]),
    ("/models", list_models, ["GET"]),
    ("/models/{id:path}", get_model, ["GET"]),
    ("/files/{job_id}/{filename:path}", get_file, ["GET"]),
]
routes = [
    *(Route(path, openai_errors(f), methods=m, name=f"openai_{f.__name__}") for path, f, m in _ENDPOINTS),
    Route("/{rest:path}", openai_errors(fallback), methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
]
