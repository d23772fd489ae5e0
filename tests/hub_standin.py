"""A local stand-in for the Hugging Face hub: the HTTP protocol huggingface_hub speaks, on 127.0.0.1.

It serves `HEAD`/`GET /{repo}/resolve/{revision}/{file}` as the hub does: small files directly with their git sha1
as ETag; LFS files (model weights) with a 302 to a "CDN" on a second port, carrying `X-Linked-Etag` (the sha256),
`X-Linked-Size` and `X-Repo-Commit`. The CDN honours Range requests. `GET /api/models/{repo}[/revision/{rev}]`
answers with `siblings` (what `HfApi.model_info(files_metadata=True)` reads). Errors carry the hub's
`X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), so huggingface_hub raises its own classes.

Knobs: `drop_after` (bytes of a body sent before the connection is cut, `drops` times), `slow` (seconds slept per
chunk), `require_token`, `wrong_sha256` (a published sha256 that does not match the bytes) and `redirects`. Every
request is recorded in `requests` (server, method, path, Range, Authorization).
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS_SUFFIXES = (".safetensors", ".sft", ".gguf", ".ckpt", ".pt", ".pth", ".bin")
_RESOLVE = re.compile(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)")
_API = re.compile(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?")


class Seen(NamedTuple):
    """One request the stand-in answered."""

    server: str  # "hub" or "cdn"
    method: str
    path: str
    range: str | None
    authorization: str | None


class HubStandin:
    """`with HubStandin({"owner/repo": {"model.safetensors": b"..."}}) as hub:` … `hub.endpoint`."""

    def __init__(
        self,
        repos: dict[str, dict[str, bytes]],
        *,
        wrong_sha256: dict[tuple[str, str], str] | None = None,
        drop_after: int | None = None,
        drops: int = 1,
        slow: float = 0.0,
        chunk: int = 16 * 1024,
        require_token: str | None = None,
        redirects: dict[str, str] | None = None,
    ) -> None:
        self.repos = repos
        self.redirects = redirects or {}  # path → Location: a server that sends a download elsewhere
        self.wrong_sha256 = wrong_sha256 or {}
        self.drop_after = drop_after
        self.drops = drops
        self.slow = slow
        self.chunk = chunk
        self.require_token = require_token
        self.requests: list[Seen] = []
        self._blobs = {hashlib.sha256(data).hexdigest(): data for files in repos.values() for data in files.values()}
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    def __enter__(self) -> HubStandin:
        self._servers = [self._serve("hub"), self._serve("cdn")]
        return self

    def __exit__(self, *exc: object) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    @property
    def endpoint(self) -> str:
        return self._url(0)

    @property
    def cdn(self) -> str:
        return self._url(1)

    def put(self, repo_id: str, filename: str, data: bytes) -> None:
        """Add or change a file (a new commit on main)."""
        self.repos.setdefault(repo_id, {})[filename] = data
        self._blobs[hashlib.sha256(data).hexdigest()] = data

    def published_sha256(self, repo_id: str, filename: str) -> str:
        data = self.repos[repo_id][filename]
        return self.wrong_sha256.get((repo_id, filename), hashlib.sha256(data).hexdigest())

    def seen(self, server: str, method: str = "GET") -> list[Seen]:
        return [r for r in self.requests if r.server == server and r.method == method]

    def _url(self, index: int) -> str:
        host, port = self._servers[index].server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self, role: str) -> ThreadingHTTPServer:
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin, Handler.role = standin, role
        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        return server

    def _take_drop(self) -> int | None:
        """How many body bytes to send before cutting this response off (None: send it all)."""
        with self._lock:
            if self.drop_after is None or self.drops <= 0:
                return None
            self.drops -= 1
            return self.drop_after


class _Handler(BaseHTTPRequestHandler):
    standin: HubStandin
    role: str

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self._handle(body=False)

    def do_GET(self) -> None:
        self._handle(body=True)

    def _handle(self, body: bool) -> None:
        hub = self.standin
        path = urlsplit(self.path).path
        auth = self.headers.get("Authorization")
        hub.requests.append(Seen(self.role, self.command, path, self.headers.get("Range"), auth))
        try:
            if path in hub.redirects:
                return self._send(302, {"Location": hub.redirects[path], "Content-Length": "0"})
            if self.role == "cdn":
                data = hub._blobs.get(path.removeprefix("/cdn/"))
                if data is None:
                    return self._error(404, "EntryNotFound", body)
                return self._send_bytes(data, {}, body)
            if hub.require_token is not None and auth != f"Bearer {hub.require_token}":
                return self._error(401, "GatedRepo", body, "Access to this model is restricted.")
            if match := _API.fullmatch(path):
                return self._api(unquote(match[1]), match[2] and unquote(match[2]), body)
            if match := _RESOLVE.fullmatch(path):
                return self._resolve(unquote(match[1]), unquote(match[2]), unquote(match[3]), body)
            self._error(404, None, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away (a cancelled download)

    def _files(self, repo_id: str, revision: str | None, body: bool) -> dict[str, bytes] | None:
        files = self.standin.repos.get(repo_id)
        if files is None:
            self._error(404, "RepoNotFound", body)
        elif revision not in (None, "main", COMMIT):
            self._error(404, "RevisionNotFound", body)
        else:
            return files
        return None

    def _api(self, repo_id: str, revision: str | None, body: bool) -> None:
        files = self._files(repo_id, revision, body)
        if files is None:
            return
        siblings = []
        for name, data in files.items():
            sibling: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": _git_sha1(data)}
            if name.endswith(LFS_SUFFIXES):
                sha = self.standin.published_sha256(repo_id, name)
                sibling["lfs"] = {"sha256": sha, "size": len(data), "pointerSize": 134}
            siblings.append(sibling)
        payload = json.dumps({"id": repo_id, "modelId": repo_id, "sha": COMMIT, "siblings": siblings}).encode()
        self._send(200, {"Content-Type": "application/json", "Content-Length": str(len(payload))})
        if body:
            self.wfile.write(payload)

    def _resolve(self, repo_id: str, revision: str, filename: str, body: bool) -> None:
        files = self._files(repo_id, revision, body)
        if files is None:
            return
        data = files.get(filename)
        if data is None:
            return self._error(404, "EntryNotFound", body)
        if not filename.endswith(LFS_SUFFIXES):
            return self._send_bytes(data, {"ETag": f'"{_git_sha1(data)}"', "X-Repo-Commit": COMMIT}, body)
        headers = {
            "Location": f"{self.standin.cdn}/cdn/{hashlib.sha256(data).hexdigest()}",
            "X-Repo-Commit": COMMIT,
            "X-Linked-Etag": f'"{self.standin.published_sha256(repo_id, filename)}"',
            "X-Linked-Size": str(len(data)),
            "ETag": f'"{_git_sha1(b"pointer " + filename.encode())}"',
            "Content-Length": "0",
        }
        self._send(302, headers)

    def _send_bytes(self, data: bytes, headers: dict[str, str], body: bool) -> None:
        start, status = 0, 200
        asked = self.headers.get("Range")
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if asked and (match := re.fullmatch(r"bytes=(\d+)-(\d*)", asked)):
            start = int(match[1])
            if start >= len(data):
                return self._send(416, {"Content-Range": f"bytes */{len(data)}", "Content-Length": "0"})
            end = min(int(match[2]) + 1, len(data)) if match[2] else len(data)
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
            data, status = data[start:end], 206
        self._send(status, {**headers, "Content-Length": str(len(data))})
        if not body:
            return
        cut = self.standin._take_drop()
        sent = 0
        for offset in range(0, len(data), self.standin.chunk):
            piece = data[offset : offset + self.standin.chunk]
            if cut is not None and sent + len(piece) > cut:
                self.wfile.write(piece[: cut - sent])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)  # mid-body: the client sees the connection drop
                self.close_connection = True
                return
            self.wfile.write(piece)
            sent += len(piece)
            if self.standin.slow:
                self.wfile.flush()
                time.sleep(self.standin.slow)

    def _error(self, status: int, code: str | None, body: bool, message: str = "") -> None:
        payload = json.dumps({"error": message or code or "Not Found"}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(payload)), "X-Repo-Commit": COMMIT}
        if code:
            headers["X-Error-Code"] = code
        if message:
            headers["X-Error-Message"] = message
        self._send(status, headers)
        if body:
            self.wfile.write(payload)

    def _send(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
