"""How an OpenAI Images request becomes a native one: its fields (`ImageOptions`), the native extras a client may add
(as body fields or in `<sd_cpp_extra_args>` in the prompt), `size`, the model it names and its multipart form.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta
from PIL import Image
from starlette.datastructures import UploadFile
from starlette.requests import Request

from sdrest.errors import from_validation
from sdrest.jobs.admission import GENERATORS, choose_model
from sdrest.jobs.errors import JobsError
from sdrest.library.architectures import ARCHITECTURES
from sdrest.library.catalog import ModelFile, UnknownModel
from sdrest.library.plan import PlanError, make_plan
from sdrest.routes.jobs import services
from sdrest.routes.openai_errors import OpenAIError, from_native, missing_parameter, model_not_found, unknown_parameter
from sdrest.schemas import MAX_PROMPT, GenerateRequest, Struct
from sdrest.services import Services
from sdrest.settings import Settings

EDIT_MIN_SIDE = 64


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
            raise unknown_parameter(key)
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


def read_prompt(options: ImageOptions, required: bool = True) -> tuple[str, dict[str, Any]]:
    """The prompt without its `<sd_cpp_extra_args>`, and those args; a missing prompt is an error when `required`."""
    if options.prompt is None or (required and not options.prompt.strip()):
        if required:
            raise missing_parameter("prompt")
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


def input_size(data: bytes | str, architecture: str | None, settings: Settings) -> tuple[int, int] | None:
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


def resolve_model(svc: Services, name: str | None) -> tuple[str | None, str | None]:
    """The library name of the model a request names (404 when there is none) and its architecture; without a name,
    those of the model admission would choose, if it can. Reads the library: call it on a thread."""
    if name:
        try:
            entry: ModelFile = svc.catalog.get(name, roles=GENERATORS)
        except UnknownModel as e:
            raise model_not_found(name, str(e)) from e
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


def native_fields(
    options: ImageOptions, prompt: str, model: str | None, size: tuple[int, int] | None, **fields: Any
) -> dict:
    """The native fields the OpenAI options map onto, with the route's own `fields` (its images, a strength)."""
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


def native_request(native: dict[str, Any], *extras: dict[str, Any], strict: bool) -> GenerateRequest:
    """The native request: the mapped fields, then the client's extras over them (the prompt's last)."""
    for more in extras:
        native.update(more)
    try:
        return msgspec.convert(native, GenerateRequest, strict=strict)
    except msgspec.ValidationError as e:
        raise from_native(from_validation(e)) from e


async def read_form(request: Request) -> tuple[dict[str, Any], dict[str, list[bytes | str]]]:
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


def as_base64(data: bytes | str) -> str:
    """An uploaded image as base64 (one sent as text already is base64 or a data URL)."""
    return data if isinstance(data, str) else base64.b64encode(data).decode()
