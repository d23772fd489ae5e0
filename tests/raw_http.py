"""Requests sent to the app exactly as written: no client-side normalisation of `..` or of percent-escapes, so a
test of a traversal guard really reaches the handler."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote

from starlette.testclient import TestClient


def raw_request(client: TestClient, method: str, raw_path: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """(status, JSON body or {"raw": bytes}) of `method raw_path` on the client's running app."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path, "root_path": "", "query_string": b"",
        "headers": [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(client.app(scope, receive, send))  # type: ignore[arg-type]
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(data) if data.startswith(b"{") else {"raw": data}
