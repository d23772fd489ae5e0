"""Model downloads from Hugging Face (or a plain https URL), resumable, checked, all-or-nothing.

A download writes to a partial file under `partial_dir` (outside the models library, so a scan never sees half a
file), named by a hash of where the bytes come from: `<hash>.part`, and `<hash>.json` saying what it holds, so a
later attempt resumes it with a Range request, and never onto other content. Only a file whose SHA-256 matches the
published one is moved into `dest`; a mismatch or a cancel removes the partial file.

    DownloadError   a download that did not produce a file; the message says why in words a user can act on
    └── Cancelled   the caller's cancel event was set; the partial file is gone

huggingface_hub builds the URLs and headers and reads the metadata; the transfer itself is plain urllib, so resuming,
progress, cancelling and the checksum stay in this module's hands.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import ipaddress
import os
import re
import secrets
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NoReturn
from urllib.parse import urljoin, urlsplit

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
from huggingface_hub.utils import build_hf_headers

from sdrest import http_only
from sdrest.library.headers import MODEL_SUFFIXES

DEFAULT_ENDPOINT = "https://huggingface.co"
ProgressFn = Callable[[int, int | None], None]  # (bytes done, total or None)

_CHUNK = 1 << 20
_PROGRESS_EVERY = 0.1  # seconds between progress calls
_TIMEOUT = 30.0  # seconds a hub download waits for the next bytes
_RESUMES = 5  # dropped connections resumed within one call, when the broken attempt had brought bytes
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Files with a loadable suffix that are not weights sd.cpp loads.
_NOT_WEIGHTS = re.compile(r"tokenizer|optimizer|scheduler|training_args|rng_state", re.IGNORECASE)
_NO_NETWORK = "this machine has no network connection to the hub, or it is down; set HF_ENDPOINT for a mirror"
_NO_NETWORK_URL = "this machine has no network connection, or that server is down"


class DownloadError(RuntimeError):
    """A download that did not produce a file; the message says why in words a user can act on."""


class Cancelled(DownloadError):
    """The download was cancelled; its partial file is removed."""


class RemoteFile(msgspec.Struct):
    """One file of a hub repo, as the hub describes it."""

    filename: str  # path inside the repo
    size: int | None
    sha256: str | None  # the LFS sha256 the hub publishes, when it does


class _PartialInfo(msgspec.Struct, forbid_unknown_fields=True):
    """The sidecar of a partial file: what its bytes are, so a resume never appends to other content."""

    source: str
    sha256: str | None = None
    size: int | None = None
    validator: str | None = None  # the server's ETag or Last-Modified, sent back as If-Range


def hub_endpoint(endpoint: str | None = None) -> str:
    """The hub to talk to: the argument, else `HF_ENDPOINT`, else huggingface.co (read at each call)."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def remote_file(
    repo_id: str, filename: str, revision: str | None = None, *, token: str | None = None, endpoint: str | None = None
) -> RemoteFile:
    """Size and sha256 of one file of a hub repo."""
    return _hub_metadata(repo_id, filename, revision, token, hub_endpoint(endpoint))[0]


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
    _refuse_existing(dest)
    base = hub_endpoint(endpoint)
    meta, location = _hub_metadata(repo_id, filename, revision, token, base)
    headers = build_hf_headers(token=token)
    if _origin(location) != _origin(base):
        headers.pop("authorization", None)  # a signed CDN URL: the token stays with the hub
    source = f"hub:{base}/{repo_id}@{revision or 'main'}:{filename}"
    info = _PartialInfo(source, meta.sha256, meta.size)
    with _partial(partial_dir, info) as part:
        explain = _hub_explainer(base, repo_id, filename, revision)
        fetch = _Fetch(location, headers, part, explain, _allow_any_http, _NO_NETWORK)
        fetch.run(progress, cancel, _TIMEOUT)
        _finish(part, meta.sha256, dest)
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
    _allow_url(url)
    _refuse_existing(dest)
    info = _PartialInfo(f"url:{url}", sha256.lower() if sha256 else None)
    with _partial(partial_dir, info) as part:
        fetch = _Fetch(url, {"user-agent": "sdrest"}, part, _url_explainer(url), _allow_url, _NO_NETWORK_URL)
        fetch.run(progress, cancel, timeout)
        _finish(part, info.sha256, dest)
    return dest


def _hub_metadata(
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
        message = f"cannot reach {base} ({error or type(error).__name__}): {_NO_NETWORK}"
    else:
        raise error
    raise DownloadError(message) from error


def _needs_token(base: str, repo_id: str, gated: bool = True) -> str:
    # The hub answers 401 both for gated and private repos and, to anonymous callers, for repos that do not exist.
    return (
        f"{repo_id} needs a token{'' if gated else ' (or does not exist)'}: set HF_TOKEN (or the hf_token setting) to "
        f"a token of an account that may read it, and accept the model's licence on its page {base}/{repo_id}"
    )


def _hub_explainer(base: str, repo_id: str, filename: str, revision: str | None) -> Callable[[int], str]:
    token, missing = (
        _needs_token(base, repo_id),
        f"no file {filename} in repo {repo_id} (revision {revision or 'main'})",
    )
    return lambda status: {401: token, 403: token, 404: missing}.get(
        status, f"{base} answered HTTP {status} for {repo_id}/{filename}; try again later"
    )


def _url_explainer(url: str) -> Callable[[int], str]:
    refused = f"{urlsplit(url).hostname} refused the download: the URL needs credentials, or it has expired"
    return lambda status: {401: refused, 403: refused, 404: f"nothing at {url} (HTTP 404)"}.get(
        status, f"{urlsplit(url).hostname} answered HTTP {status} for {url}"
    )


def _allow_url(url: str) -> None:
    """https:// anywhere; http:// only to this machine (a local mirror, the tests' stand-in)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise DownloadError(f"{url!r} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if host and (scheme == "https" or (scheme == "http" and _is_loopback(host))):
        return
    raise DownloadError(
        f"only https:// URLs can be downloaded (http:// only from 127.0.0.1 or localhost), not {scheme or url}:"
    )


def _allow_any_http(url: str) -> None:
    """A hub mirror may be plain http on a LAN: HF_ENDPOINT was set by whoever runs the server."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"the hub redirected to {url}, which is not an http(s) URL")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _refuse_existing(dest: Path) -> None:
    if dest.exists():
        raise DownloadError(f"{dest} already exists")


class _Partial:
    """An open, locked partial file with its sidecar, and the running hash of the bytes it holds."""

    def __init__(self, path: Path, file: IO[bytes], info: _PartialInfo) -> None:
        self.path = path
        self.sidecar = path.with_suffix(".json")
        self.file = file
        self.info = info
        self.hash = hashlib.sha256()
        self.done = 0

    def restart(self) -> None:
        self.file.seek(0)
        self.file.truncate()
        self.hash = hashlib.sha256()
        self.done = 0

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
        except OSError as e:  # not the network's fault, so never retried as a dropped connection
            raise DownloadError(f"cannot write {self.path}: {e.strerror or e}") from None
        self.hash.update(data)
        self.done += len(data)

    def check_space(self) -> None:
        needed = (self.info.size or 0) - self.done
        free = shutil.disk_usage(self.path.parent).free
        if needed > free:
            raise DownloadError(f"not enough free space in {self.path.parent}: {needed} bytes needed, {free} free")

    def save_info(self) -> None:
        self.sidecar.write_bytes(msgspec.json.encode(self.info))

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)


@contextmanager
def _partial(partial_dir: Path, info: _PartialInfo) -> Iterator[_Partial]:
    """Open (or resume) the partial file for `info.source`, locked against a second download of the same file."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    path = partial_dir / (hashlib.sha256(info.source.encode()).hexdigest()[:32] + ".part")
    with open(path, "a+b") as file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DownloadError("this file is already being downloaded by another job") from None
        part = _Partial(path, file, info)
        try:
            kept = msgspec.json.decode(part.sidecar.read_bytes(), type=_PartialInfo)
        except (OSError, msgspec.DecodeError):
            kept = None
        if kept is not None and _same_content(kept, info):
            part.info = msgspec.structs.replace(kept, size=info.size or kept.size)
            _hash_existing(part)
        else:
            part.restart()
        part.save_info()
        yield part


def _same_content(kept: _PartialInfo, wanted: _PartialInfo) -> bool:
    """Whether a partial file holds the start of the file now wanted (else it is started again)."""
    sizes_agree = wanted.size is None or kept.size in (None, wanted.size)
    return kept.source == wanted.source and kept.sha256 == wanted.sha256 and sizes_agree


def _hash_existing(part: _Partial) -> None:
    part.file.seek(0)
    while data := part.file.read(_CHUNK):
        part.hash.update(data)
        part.done += len(data)


class _Fetch:
    """The transfer of one URL into a partial file: resumed with Range, cut short by `cancel`."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        part: _Partial,
        explain: Callable[[int], str],
        allow: Callable[[str], None],
        unreachable: str,
    ) -> None:
        self.url = url
        self.unreachable = unreachable  # "cannot reach X (reason): <this>"
        self.headers = {**headers, "accept-encoding": "identity"}
        self.part = part
        self.explain = explain
        self.opener = http_only.opener(_RedirectPolicy(allow))
        self.last_report = 0.0

    def run(self, progress: ProgressFn | None, cancel: threading.Event | None, timeout: float) -> None:
        self.progress, self.cancel = progress, cancel
        resumes = 0
        while True:
            self._check_cancel()
            size = self.part.info.size
            if size is not None and self.part.done > size:
                self.part.restart()
            if size is not None and self.part.done == size:
                break  # whole: nothing (more) to fetch
            self.part.check_space()
            before = self.part.done
            try:
                self._attempt(timeout)
            except urllib.error.HTTPError as e:
                raise DownloadError(self.explain(e.code)) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", None) or e or type(e).__name__
                if self.part.done != before and resumes < _RESUMES:
                    resumes += 1
                    continue
                self._broken(f" ({reason})")
            size = self.part.info.size
            if size is None or self.part.done >= size:
                break  # a body of unknown length ends where the server ends it
            if self.part.done != before and resumes < _RESUMES:
                resumes += 1  # the connection dropped mid-body: ask for the rest at once
                continue
            self._broken("")
        self._report(force=True)

    def _broken(self, reason: str) -> NoReturn:
        host = urlsplit(self.url).hostname
        if self.part.done == 0:
            raise DownloadError(f"cannot reach {host}{reason}: {self.unreachable}") from None
        raise DownloadError(
            f"the connection to {host} broke after {self.part.done} of {self.part.info.size or '?'} bytes{reason}; "
            "run the download again to resume it"
        ) from None

    def _attempt(self, timeout: float) -> None:
        headers = dict(self.headers)
        offset = self.part.done
        if offset:
            headers["range"] = f"bytes={offset}-"
            if self.part.info.validator:
                headers["if-range"] = self.part.info.validator
        request = urllib.request.Request(self.url, headers=headers)
        try:
            response = self.opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as e:
            e.close()
            if e.code == 416 and offset:  # asked past the end: the remote file changed, or the partial is whole
                self.part.restart()
                return
            raise
        with response:
            self._start(response, offset)
            self._report(force=True)
            while data := response.read1(_CHUNK):
                self._check_cancel()
                self.part.write(data)
                self._report()
        self.part.file.flush()

    def _start(self, response: http.client.HTTPResponse, offset: int) -> None:
        """Make the partial file agree with what the server sends: the rest (206) or everything (200)."""
        length = response.headers.get("content-length")
        if response.status == 206:
            match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.headers.get("content-range", ""))
            if not match or int(match[1]) != offset:
                raise DownloadError(f"the server sent a range other than the one asked for ({match and match[0]})")
            if match[2] != "*":
                self._set_size(int(match[2]))
        else:
            if offset:
                self.part.restart()  # the server ignored the Range (or the file changed): start again
            if length and length.isdigit():
                self._set_size(int(length))
        if self.part.info.validator is None:
            etag = response.headers.get("etag")
            strong = etag if etag and not etag.startswith("W/") else None
            validator = strong or response.headers.get("last-modified")
            if validator:
                self.part.info = msgspec.structs.replace(self.part.info, validator=validator)
                self.part.save_info()

    def _set_size(self, size: int) -> None:
        if self.part.info.size is not None and self.part.info.size != size:
            self.part.restart()
            raise DownloadError(
                f"the server's file has {size} bytes, not the {self.part.info.size} expected; try again"
            )
        if self.part.info.size is None:
            self.part.info = msgspec.structs.replace(self.part.info, size=size)
            self.part.save_info()

    def _check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            self.part.remove()
            raise Cancelled("the download was cancelled")

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.progress is not None and (force or now - self.last_report >= _PROGRESS_EVERY):
            self.last_report = now
            self.progress(self.part.done, self.part.info.size)


class _RedirectPolicy(urllib.request.HTTPRedirectHandler):
    """Follows redirects only where `allow` permits, and never carries the token to another origin."""

    def __init__(self, allow: Callable[[str], None]) -> None:
        self.allow = allow

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: object, newurl: str
    ) -> urllib.request.Request | None:
        self.allow(newurl)
        new = super().redirect_request(req, fp, code, msg, headers, newurl)  # type: ignore[arg-type]
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _finish(part: _Partial, sha256: str | None, dest: Path) -> None:
    """Check the whole file's hash, then move it into `dest` without ever showing a half-written file there."""
    got = part.hash.hexdigest()
    if sha256 is not None and got != sha256.lower():
        part.remove()
        raise DownloadError(f"checksum mismatch: expected {sha256}, got {got}; the download was removed, try again")
    part.file.flush()
    os.fsync(part.file.fileno())
    _place(part.path, dest)
    part.remove()


def _place(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)  # atomic, and refuses to replace a file that appeared meanwhile
        return
    except FileExistsError:
        raise DownloadError(f"{dest} already exists") from None
    except OSError:
        pass  # another filesystem, or one without hard links: copy beside dest, then rename
    temp = dest.parent / f".{dest.name}.{secrets.token_hex(4)}.tmp"
    try:
        with open(source, "rb") as src, open(temp, "wb") as out:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        _refuse_existing(dest)
        os.replace(temp, dest)
    finally:
        temp.unlink(missing_ok=True)
