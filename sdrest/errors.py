"""The native API's exception tree, and the single handler that turns any error into its one JSON shape.

    ApiError                      500 internal_error
    ├── BadRequest                400 bad_request
    ├── Unauthorized              401 unauthorized (with WWW-Authenticate)
    ├── Forbidden                 403 forbidden (a role too low, a cross-site request)
    ├── NotFound                  404 not_found
    ├── MethodNotAllowed          405 method_not_allowed
    ├── Conflict                  409 conflict
    ├── Gone                      410 gone
    ├── PayloadTooLarge           413 payload_too_large
    ├── UnsupportedMediaType      415 unsupported_media_type
    ├── Invalid                   422 validation_error (carries the JSON path of the bad field)
    ├── QueueFull                 429 queue_full
    └── EngineUnavailable         503 engine_unavailable

Every error response is `{"error": {"code": ..., "message": ..., "field": ...?, "details": ...?}}`. The jobs layer
raises its own errors (`sdrest.jobs.errors`); `from_domain` renders them in this family's shape.
"""

from __future__ import annotations

import logging
import re
from typing import Any, ClassVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sdrest.jobs import errors as jobs_errors

log = logging.getLogger("sdrest.http")


class ApiError(Exception):
    """Base of all errors the API reports; subclasses fix the status and the stable `code`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        if self.details:
            error["details"] = self.details
        return {"error": error}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class Gone(ApiError):
    status, code = 410, "gone"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Invalid(ApiError):
    status, code = 422, "validation_error"


class QueueFull(ApiError):
    status, code = 429, "queue_full"


class EngineUnavailable(ApiError):
    status, code = 503, "engine_unavailable"


_PATH = re.compile(r" - at `(\$[^`]*)`$")
_FIELD_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]+)`")


def from_validation(error: msgspec.ValidationError | msgspec.DecodeError) -> ApiError:
    """A 422 naming the field msgspec rejected (`$.width`), or a 400 for a body that is not JSON at all."""
    text = str(error)
    if isinstance(error, msgspec.ValidationError):
        match = _PATH.search(text)
        at = match.group(1) if match else "$"
        message = _PATH.sub("", text)
        # An unknown or missing field is reported at its parent; the field itself is what the client must fix.
        named = _FIELD_NAMED.search(message)
        field = f"{at}.{named.group(1)}" if named else at
        return Invalid(f"{field}: {message}", field=field)
    return BadRequest(f"the body is not valid JSON: {text}")


def decode_body(raw: bytes, kind: type) -> Any:
    """`raw` (an empty body counts as `{}`) decoded as `kind`; a bad one raises the 422 naming the bad field."""
    try:
        return msgspec.json.decode(raw or b"{}", type=kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise from_validation(e) from e


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json", headers=headers)


_DOMAIN: dict[type[jobs_errors.JobsError], type[ApiError]] = {
    jobs_errors.Invalid: Invalid,
    jobs_errors.NoSuchJob: NotFound,
    jobs_errors.Expired: Gone,
    jobs_errors.WrongState: Conflict,
    jobs_errors.QueueFull: QueueFull,
}


def from_domain(error: jobs_errors.JobsError) -> ApiError:
    """The native API's error for a refusal of the jobs layer."""
    return _DOMAIN.get(type(error), ApiError)(error.message, field=error.field, details=error.details)


_HTTP_CODES: dict[int, type[ApiError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


async def handle(request: Request, exc: Exception) -> Response:
    """The one exception handler: ApiErrors as they are, Starlette's HTTP errors mapped, anything else a logged 500."""
    headers: dict[str, str] | None = None
    if isinstance(exc, ApiError):
        error = exc
    elif isinstance(exc, jobs_errors.JobsError):
        error = from_domain(exc)
    elif isinstance(exc, HTTPException):
        error = _HTTP_CODES.get(exc.status_code, ApiError)(str(exc.detail))
        headers = dict(exc.headers or {})  # e.g. Allow on a 405
    else:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        error = ApiError("internal server error")
    return json_response(error.body(), error.status, headers)
