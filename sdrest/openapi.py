"""The OpenAPI 3.1 document of every API family, generated from the app's route table and the msgspec structs.

`OPERATIONS` (`sdrest.openapi_operations`) says, for each (method, path template) the app routes, which struct the
handler decodes, which it answers with, and its query parameters; `build` walks the routes and turns that into the
document, the structs' JSON Schemas (`msgspec.json.schema_components`) becoming its components. A route without an
entry is left out of the document, and `tests/test_openapi.py` fails until it has one. Bodies that no struct decodes
(the AUTOMATIC1111 and OpenAI families, presets) are documented as JSON objects naming the keys their handlers read,
values left open; the answers that have no struct in the routes get the small ones of `sdrest.openapi_shapes`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
from starlette.routing import BaseRoute, Mount, Route

from sdrest import __version__
from sdrest.access import is_public, required_role
from sdrest.openapi_operations import (
    BINARY,
    JOB_LINKS,
    JSON,
    MULTIPART,
    OPERATIONS,
    SECURITY_SCHEMES,
    TAGS,
    TEXT,
    Op,
)
from sdrest.openapi_shapes import A1111Error, ErrorResponse, OpenAIError
from sdrest.openapi_shapes import RemoteFile as RemoteFile  # the hub's answer, checked against downloads.RemoteFile
from sdrest.schemas import (
    Job,
)

REF = "#/components/schemas/{name}"


# -- building the document --------------------------------------------------------------------------------------------

_CONVERTER = re.compile(r"\{(\w+)(:\w+)?\}")


def routes_of(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, set[str]]]:
    """(method, OpenAPI path template, the parameters that take slashes) of every HTTP route, mounts walked."""
    for route in routes:
        if isinstance(route, Mount):
            yield from routes_of(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            slashes = {name for name, kind in _CONVERTER.findall(route.path) if kind == ":path"}
            for method in sorted((route.methods or set()) - {"HEAD"}):
                yield method, _CONVERTER.sub(r"{\1}", prefix + route.path), slashes


def family(path: str) -> str:
    return "a1111" if path.startswith("/sdapi/") else "openai" if path.startswith("/v1/") else "native"


def operation_id(method: str, path: str) -> str:
    """`get_jobs_by_id`, `post_sdapi_txt2img`, `get_openai_models_by_id`: unique, stable, readable."""
    rest = path.removeprefix("/api/v1").replace("/sdapi/v1", "/sdapi").replace("/v1/", "/openai/", 1)
    words = [f"by_{p[1:-1]}" if p.startswith("{") else p for p in rest.strip("/").split("/")]
    return re.sub(r"\W", "_", "_".join([method.lower(), *words]))


def _types() -> list[Any]:
    found: list[Any] = [ErrorResponse, A1111Error, OpenAIError]
    for op in OPERATIONS.values():
        for kind in (op.request, op.response):
            if kind is not None and kind not in found:
                found.append(kind)
    if None not in found:
        found.append(None)
    return found


@dataclass
class _Schemas:
    of: dict[Any, dict[str, Any]] = field(default_factory=dict)
    components: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def make(cls) -> _Schemas:
        kinds = _types()
        schemas, components = msgspec.json.schema_components(kinds, ref_template=REF)
        return cls(dict(zip(kinds, schemas, strict=True)), components)


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(path: str, schemas: _Schemas) -> dict[str, Any]:
    native = schemas.of[ErrorResponse]
    kind = family(path)
    if kind == "native":
        return {
            "4XX": _json(native, "400 bad_request, 401 unauthorized (with WWW-Authenticate), 403 forbidden, 404 "
                         "not_found, 405, 409 conflict, 410 gone, 413, 415, 422 validation_error (with field), "
                         "429 queue_full"),
            "5XX": _json(native, "500 internal_error, 503 engine_unavailable"),
        }  # fmt: skip
    own = schemas.of[A1111Error if kind == "a1111" else OpenAIError]
    either = {"anyOf": [own, native]}
    # Authentication and the body limit run before the family's own handlers, and answer in the native shape.
    answers = {
        "401": _json(either, "no or bad credentials"),
        "403": _json(either, "a role too low, a cross-site request (or an image URL's bad signature)"),
        "404": _json(
            either,
            "not found (a path no route matches at all, e.g. one with a control character, answers "
            "in the native shape)",
        ),
        "413": _json(either, "the body is over max_body_bytes"),
        "4XX": _json(own, "this family's error shape"),
    }
    # A1111 routes answer unexpected server errors in the native shape; OpenAI routes catch everything.
    answers["5XX"] = _json(either if kind == "a1111" else own, "a failed job, or a server error")
    return answers


def _form(schema: dict[str, Any], schemas: _Schemas) -> dict[str, Any]:
    """A struct's fields as form parts: the same names, but each part is text (numbers, booleans and JSON objects are
    converted from it) or a file, so no part's value is constrained here."""
    struct = schemas.components[schema["$ref"].rsplit("/", 1)[1]]
    return {
        "type": "object",
        "description": "the fields of the JSON body as parts (files for images; dotted names for nested fields)",
        "properties": {name: {} for name in struct["properties"]},
        "required": struct.get("required", []),
    }


def _body(op: Op, schemas: _Schemas) -> dict[str, Any] | None:
    if op.request is not None:
        schema = schemas.of[op.request]
        content = {JSON: {"schema": schema}} | {media: {"schema": _form(schema, schemas)} for media in op.forms}
        if op.example is not None:
            content[JSON]["example"] = op.example
        return {"required": op.body_required, "content": content}
    # No struct decodes these bodies: the keys the handler reads are named, their values left open.
    anything = {"type": "object", "properties": {name: {} for name in op.fields}}
    if op.body == "object":
        return {"required": op.body_required, "content": {JSON: {"schema": anything}}}
    if op.body == "form":
        return {"required": True, "content": {MULTIPART: {"schema": anything}}}
    if op.body == "text":
        return {"required": op.body_required, "content": {TEXT: {"schema": {"type": "string"}}}}
    return None


def _success(op: Op, schemas: _Schemas) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": op.summary}
    content: dict[str, Any] = {}
    if op.response is not None or (not op.media and op.status != 204):
        content[JSON] = {"schema": schemas.of[op.response]}
    if not op.waits:
        content |= {media: {"schema": BINARY} for media in op.media}
    if content:
        answer["content"] = content
    links = {
        name: {"operationId": operation_id(verb, target), "parameters": parameters}
        for name, (verb, target, parameters) in JOB_LINKS.items()
    }
    if op.response is Job:
        answer["links"] = links
    responses: dict[str, Any] = {str(op.status): answer} if op.status else {}
    if op.waits:
        finished = {JSON: {"schema": schemas.of[Job]}} | {media: {"schema": BINARY} for media in op.media}
        responses["200"] = {"description": "the finished job (`?wait=true`)", "content": finished, "links": links}
    return responses


def _operation(method: str, path: str, slashes: set[str], op: Op, schemas: _Schemas, auth: str) -> dict[str, Any]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        | ({"description": "may contain slashes"} if name in slashes else {})
        for name in re.findall(r"\{(\w+)\}", path)
    ]
    for param in op.query:
        entry = {"name": param.name, "in": "query", "required": param.required, "schema": param.schema}
        parameters.append(entry | ({"description": param.description} if param.description else {}))
    public = is_public(method, path)
    role = required_role(method, path)
    description = op.description
    if auth != "none" and not public:
        description = f"{description}\n\nNeeds the `{role}` role.".strip()
    operation: dict[str, Any] = {
        "operationId": operation_id(method, path),
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": parameters,
        "responses": _success(op, schemas) | _errors(path, schemas),
    }
    if description:
        operation["description"] = description
    if (body := _body(op, schemas)) is not None:
        operation["requestBody"] = body
    if public:
        operation["security"] = []
    else:
        operation["x-required-role"] = role
    return operation


def build(routes: list[BaseRoute], *, server: str, auth: str = "none") -> dict[str, Any]:
    """The document for an app's `routes`, served at `server` with the `auth` setting's methods. Routes without an
    entry in `OPERATIONS` are left out (`missing` names them)."""
    schemas = _Schemas.make()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, slashes in routes_of(routes):
        op = OPERATIONS.get((method, path))
        if op is not None:
            paths.setdefault(path, {})[method.lower()] = _operation(method, path, slashes, op, schemas, auth)
    methods = {m.strip() for m in auth.split(",") if m.strip()} or {"none"}
    required: list[dict[str, list[str]]] = [{name: []} for name in SECURITY_SCHEMES]
    security = [{}] if "none" in methods else [{}, *required] if "optional" in methods else required
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sdrest",
            "version": __version__,
            "description": "Image and video generation over stable-diffusion.cpp: the native API (`/api/v1`), an "
            "AUTOMATIC1111-compatible one (`/sdapi/v1`) and an OpenAI Images-compatible one (`/v1`). Generated from "
            "the server's route table and request/response structs.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": server}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "security": security,
        "paths": paths,
        "components": {"schemas": schemas.components, "securitySchemes": SECURITY_SCHEMES},
    }


def missing(routes: list[BaseRoute]) -> list[str]:
    """The app's routes that `OPERATIONS` does not describe (so the document lacks them)."""
    return [f"{method} {path}" for method, path, _ in routes_of(routes) if (method, path) not in OPERATIONS]
