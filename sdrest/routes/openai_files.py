"""The signed image URLs of the OpenAI family (`response_format: url`): making them, and `GET /v1/files/...`, which
serves an output to whoever holds an unexpired URL, without credentials.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from sdrest.auth.tokens import load_or_create_secret
from sdrest.jobs.store import JobRecord
from sdrest.routes.jobs import services
from sdrest.routes.openai_errors import OpenAIError

URL_SECONDS = 3600  # how long an image URL stays valid, as OpenAI's do


async def signed_urls(request: Request, job: JobRecord) -> list[str]:
    """A URL for each of a finished job's outputs, valid for `URL_SECONDS`."""
    secret = await _secret(request)
    expires = int(time.time()) + URL_SECONDS
    return [_signed_url(request, secret, job.id, output.filename, expires) for output in job.outputs]


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
