"""Getting models from outside: a download job for one file (from the hub, or a plain URL when allowed), a pull of
every file of a starter model, the starters themselves, and the file list of a hub repository.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from sdrest.errors import Conflict, Invalid, NotFound, decode_body, json_response
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library.folders import folder_for_role
from sdrest.library.headers import MODEL_SUFFIXES
from sdrest.library.names import BadName, inside
from sdrest.routes.jobs import job_view, owner, services
from sdrest.routes.models_requests import DownloadRequest, PullRequest
from sdrest.routes.models_tasks import queued
from sdrest.specs import Download


async def download(request: Request) -> Response:
    svc = services(request)
    body = decode_body(await request.body(), DownloadRequest)
    if body.url is not None:
        if not svc.settings.allow_download_urls:
            raise Invalid("downloads from plain URLs are off; set allow_download_urls = true", field="$.url")
        filename = body.filename or body.url.rsplit("/", 1)[-1].split("?")[0]
        repo = None
    else:
        if not body.repo_id or not body.filename:
            raise Invalid("give repo_id and filename (or url)", field="$.repo_id" if not body.repo_id else "$.filename")
        filename, repo = body.filename, body.repo_id
    try:
        inside(svc.catalog.models_dir, filename, nested=True)  # a repository path: plain segments, no way up
    except BadName as e:
        raise Invalid(f"filename: {e}", field="$.filename") from e
    base = Path(filename).name
    if Path(base).suffix.lower() not in MODEL_SUFFIXES:
        raise Invalid(f"{base} is not a model file sd.cpp loads ({', '.join(MODEL_SUFFIXES)})", field="$.filename")
    folder = folder_for_role(body.role) if body.role else "downloads"
    try:
        target = inside(svc.catalog.models_dir / folder, base)
    except BadName as e:
        raise Invalid(str(e), field="$.filename") from e
    if target.exists():
        raise Conflict(f"{folder}/{base} exists in the library")
    spec = Download(
        repo_id=repo, filename=filename, revision=body.revision, url=body.url, role=body.role, folder=folder
    )
    return await queued(svc, spec, request)


async def pull(request: Request) -> Response:
    """Queue a download job for every file of a starter model the library does not have yet."""
    from sdrest.library import starters

    svc = services(request)
    body = decode_body(await request.body(), PullRequest)
    try:
        starter = starters.starter(body.name)
    except KeyError as e:
        raise NotFound(str(e.args[0]), field="$.name") from None
    jobs = []
    for file in starter.files:
        folder = folder_for_role(file.role)
        if (svc.catalog.models_dir / folder / Path(file.filename).name).exists():
            continue
        spec = Download(repo_id=file.repo_id, filename=file.filename, revision=file.revision, role=file.role,
                        folder=folder)  # fmt: skip
        job = JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, owner=owner(request))
        await run_in_threadpool(svc.queue.submit, job)
        jobs.append(job_view(svc, job))
    return json_response({"name": starter.name, "jobs": jobs}, status=202)


async def list_starters(request: Request) -> Response:
    from sdrest.library import starters

    return json_response({"starters": list(starters.STARTERS.values())})


async def remote(request: Request) -> Response:
    from sdrest.library import downloads  # huggingface_hub is slow to import: only when asked

    svc = services(request)
    repo_id = request.query_params.get("repo_id")
    if not repo_id:
        raise Invalid("repo_id is required", field="repo_id")
    try:
        files = await run_in_threadpool(
            downloads.list_remote, repo_id, request.query_params.get("revision"), token=svc.settings.hf_token or None
        )
    except downloads.DownloadError as e:
        raise NotFound(str(e), field="repo_id") from e
    return json_response({"repo_id": repo_id, "files": files})
