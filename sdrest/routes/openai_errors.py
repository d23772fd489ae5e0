"""The OpenAI family's one error shape, `{"error": {"message", "type", "param", "code"}}`: the error type, the
translation of native and jobs-layer errors into it, and the decorator that renders every error of a route in it.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from sdrest.errors import ApiError, EngineUnavailable, from_domain, json_response
from sdrest.jobs.errors import JobsError

log = logging.getLogger("sdrest.openai")

Endpoint = Callable[[Request], Awaitable[Response]]


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
        return json_response(self.body(), self.status, self.headers)


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


def unknown_parameter(name: str) -> OpenAIError:
    return OpenAIError(400, f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def model_not_found(name: str, why: str) -> OpenAIError:
    return OpenAIError(404, f"The model {name!r} does not exist ({why})", param="model", code="model_not_found")


def missing_parameter(name: str) -> OpenAIError:
    return OpenAIError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")


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
