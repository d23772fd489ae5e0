"""The A1111 family's one error shape, `{"error", "detail", "body", "errors"}` as A1111 (FastAPI) renders it: the
error type and the decorator that renders every error of a route in it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from sdrest.errors import ApiError, from_domain
from sdrest.jobs.errors import JobsError


class A1111Error(Exception):
    """An error of this family: its HTTP status and the message A1111 clients show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _shaped(status: int, kind: str, message: str) -> Response:
    """An error as A1111 (FastAPI) renders it: `{"error", "detail", "body", "errors"}`."""
    return JSONResponse({"error": kind, "detail": message, "body": "", "errors": message}, status_code=status)


def a1111_error(error: ApiError) -> Response:
    """A native error (the auth middleware's 401/403) in this family's shape."""
    return _shaped(error.status, "HTTPException", error.message)


def a1111_errors(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Render every error of this family in A1111's shape."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except A1111Error as e:
            return _shaped(e.status, "HTTPException", e.message)
        except JobsError as e:
            error = from_domain(e)
            return _shaped(error.status, type(e).__name__, error.message)
        except ApiError as e:
            if e.status >= 500:
                raise
            return _shaped(e.status, type(e).__name__, e.message)

    return wrapped
