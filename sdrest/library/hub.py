"""The Hugging Face hub's side of a download: which hub, a file's size and sha256, a repo's loadable files, and the
hub's refusals in words a user can act on.

huggingface_hub builds the URLs and reads the metadata; the bytes themselves are fetched by `transfer`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import NoReturn
from urllib.parse import urljoin

import httpx2
import msgspec
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from sdrest.library.download_errors import DownloadError
from sdrest.library.headers import MODEL_SUFFIXES

DEFAULT_ENDPOINT = "https://huggingface.co"
NO_NETWORK = "this machine has no network connection to the hub, or it is down; set HF_ENDPOINT for a mirror"

_SHA256 = re.compile(r"[0-9a-f]{64}")
# Files with a loadable suffix that are not weights sd.cpp loads.
_NOT_WEIGHTS = re.compile(r"tokenizer|optimizer|scheduler|training_args|rng_state", re.IGNORECASE)


class RemoteFile(msgspec.Struct):
    """One file of a hub repo, as the hub describes it."""

    filename: str  # path inside the repo
    size: int | None
    sha256: str | None  # the LFS sha256 the hub publishes, when it does


def hub_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to: the argument, else `HF_ENDPOINT`, else huggingface.co (read at each call)."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def remote_file(
    repo_id: str, filename: str, revision: str | None = None, *, token: str | None = None, endpoint: str | None = None
) -> RemoteFile:
    """Size and sha256 of one file of a hub repo."""
    return hub_metadata(repo_id, filename, revision, token, hub_endpoint(endpoint))[0]


def list_remote(
    repo_id: str, revision: str | None = None, *, token: str | None = None, endpoint: str | None = None
) -> list[RemoteFile]:
    """The files of a hub repo that stable-diffusion.cpp can load, with sizes and sha256 where the hub has them."""
    base = hub_endpoint(endpoint)
    try:
        info = HfApi(endpoint=base, token=token).model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as e:
        _raise_hub_error(e, base, repo_id, None, revision)
    found = []
    for sibling in info.siblings or []:
        name = sibling.rfilename
        if name.lower().endswith(MODEL_SUFFIXES) and not _NOT_WEIGHTS.search(name):
            lfs = sibling.lfs
            found.append(RemoteFile(name, lfs.size if lfs else sibling.size, lfs.sha256 if lfs else None))
    return sorted(found, key=lambda f: f.filename)


def hub_metadata(
    repo_id: str, filename: str, revision: str | None, token: str | None, base: str
) -> tuple[RemoteFile, str]:
    """The file's metadata and the URL its bytes come from (the hub, or the CDN it redirects to)."""
    try:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=base)
        meta = get_hf_file_metadata(url, token=token, endpoint=base)
    except Exception as e:
        _raise_hub_error(e, base, repo_id, filename, revision)
    # The hub's ETag is the sha256 for LFS files and a git sha1 for small ones.
    sha256 = meta.etag if meta.etag and _SHA256.fullmatch(meta.etag) else None
    return RemoteFile(filename, meta.size, sha256), urljoin(url, meta.location)


def hub_explainer(base: str, repo_id: str, filename: str, revision: str | None) -> Callable[[int], str]:
    """What an HTTP status met while fetching `filename`'s bytes means, in words a user can act on."""
    token, missing = (
        _needs_token(base, repo_id),
        f"no file {filename} in repo {repo_id} (revision {revision or 'main'})",
    )
    return lambda status: {401: token, 403: token, 404: missing}.get(
        status, f"{base} answered HTTP {status} for {repo_id}/{filename}; try again later"
    )


def _raise_hub_error(error: Exception, base: str, repo_id: str, filename: str | None, revision: str | None) -> NoReturn:
    at = f"revision {revision or 'main'}"
    status = error.response.status_code if isinstance(error, HfHubHTTPError) and error.response is not None else None
    if isinstance(error, HFValidationError):
        message = f"{repo_id!r} is not a repo id of the form owner/name ({error})"
    elif isinstance(error, GatedRepoError) or status in (401, 403):
        message = _needs_token(base, repo_id, gated=isinstance(error, GatedRepoError))
    elif isinstance(error, RevisionNotFoundError):
        message = f"no {at} in repo {repo_id}"
    elif isinstance(error, RepositoryNotFoundError):
        message = f"no repo {repo_id} on {base} (if it is private, set HF_TOKEN or the hf_token setting)"
    elif isinstance(error, EntryNotFoundError) or status == 404:
        message = f"no file {filename} in repo {repo_id} ({at})" if filename else f"no repo {repo_id} ({at})"
    elif status is not None:
        message = f"{base} answered HTTP {status} for {repo_id}; try again later"
    elif isinstance(error, (httpx2.TransportError, OSError)):
        message = f"cannot reach {base} ({error or type(error).__name__}): {NO_NETWORK}"
    else:
        raise error
    raise DownloadError(message) from error


def _needs_token(base: str, repo_id: str, gated: bool = True) -> str:
    # The hub answers 401 both for gated and private repos and, to anonymous callers, for repos that do not exist.
    return (
        f"{repo_id} needs a token{'' if gated else ' (or does not exist)'}: set HF_TOKEN (or the hf_token setting) to "
        f"a token of an account that may read it, and accept the model's licence on its page {base}/{repo_id}"
    )
