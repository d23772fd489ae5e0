"""Model downloads from Hugging Face (or a plain https URL), resumable, checked, all-or-nothing: the two entry points.

A download writes to a partial file outside the models library, resumes it with a Range request, and moves it into
`dest` only when its SHA-256 matches the published one; a mismatch or a cancel removes the partial file. The parts:

    hub               which hub, a file's metadata, a repo's loadable files, the hub's refusals in words
    url_policy        which URLs may be fetched, and the origin test that keeps a token at home
    partials          the partial file, its sidecar and lock, the checksum, the move into `dest`
    transfer          the resumable urllib fetch of one URL into a partial file
    download_errors   DownloadError and its Cancelled

The names callers use (the errors, `RemoteFile`, `list_remote`, `remote_file`, ...) are all importable from here.
"""

from __future__ import annotations

import threading
from pathlib import Path

from huggingface_hub.utils import build_hf_headers

from sdrest.library.download_errors import Cancelled, DownloadError
from sdrest.library.hub import (
    DEFAULT_ENDPOINT,
    NO_NETWORK,
    RemoteFile,
    hub_endpoint,
    hub_explainer,
    hub_metadata,
    list_remote,
    remote_file,
)
from sdrest.library.partials import PartialInfo, finish, open_partial, refuse_existing
from sdrest.library.transfer import Fetch, ProgressFn
from sdrest.library.url_policy import NO_NETWORK_URL, allow_any_http, allow_url, origin, url_explainer

__all__ = [
    "DEFAULT_ENDPOINT",
    "Cancelled",
    "DownloadError",
    "ProgressFn",
    "RemoteFile",
    "download_hub",
    "download_url",
    "hub_endpoint",
    "list_remote",
    "remote_file",
]

_TIMEOUT = 30.0  # seconds a hub download waits for the next bytes


def download_hub(
    repo_id: str,
    filename: str,
    dest: Path,
    *,
    revision: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    partial_dir: Path,
) -> Path:
    """Download `filename` of hub repo `repo_id` to `dest` (which must not exist), checked against its sha256."""
    refuse_existing(dest)
    base = hub_endpoint(endpoint)
    meta, location = hub_metadata(repo_id, filename, revision, token, base)
    headers = build_hf_headers(token=token)
    if origin(location) != origin(base):
        headers.pop("authorization", None)  # a signed CDN URL: the token stays with the hub
    source = f"hub:{base}/{repo_id}@{revision or 'main'}:{filename}"
    info = PartialInfo(source, meta.sha256, meta.size)
    with open_partial(partial_dir, info) as part:
        explain = hub_explainer(base, repo_id, filename, revision)
        fetch = Fetch(location, headers, part, explain, allow_any_http, NO_NETWORK)
        fetch.run(progress, cancel, _TIMEOUT)
        finish(part, meta.sha256, dest)
    return dest


def download_url(
    url: str,
    dest: Path,
    *,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    partial_dir: Path,
    sha256: str | None = None,
    timeout: float = 30.0,
) -> Path:
    """Download an https:// URL (http:// only from this machine) to `dest`, checked against `sha256` when given."""
    allow_url(url)
    refuse_existing(dest)
    info = PartialInfo(f"url:{url}", sha256.lower() if sha256 else None)
    with open_partial(partial_dir, info) as part:
        fetch = Fetch(url, {"user-agent": "sdrest"}, part, url_explainer(url), allow_url, NO_NETWORK_URL)
        fetch.run(progress, cancel, timeout)
        finish(part, info.sha256, dest)
    return dest
