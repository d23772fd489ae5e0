"""Webhooks: on the events a request (or the server's settings) chose, POST the job as JSON to a URL, signed with
HMAC-SHA256 over the timestamp and the body, retried with backoff for a bounded time, from a thread of its own so
the queue never waits on a slow receiver.

Signature header: `X-Sdrest-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
Targets must pass the allow-list (`webhook_allow`: host names or CIDR networks); with auth off, loopback is allowed
too. The check runs when a job is submitted and again before each delivery (a name may resolve elsewhere later), so
a webhook cannot become a way into the server's private network.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import ipaddress
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import msgspec

from sdrest import http_only

log = logging.getLogger("sdrest.webhooks")
EVENTS = ("started", "completed", "failed", "cancelled")
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 16.0)  # five more tries over about half a minute, then the delivery is dropped


class Webhook(msgspec.Struct, frozen=True):
    url: str
    events: tuple[str, ...] = ("completed", "failed", "cancelled")


class WebhookRefused(ValueError):
    """The URL is not one this server may call."""


class AllowList:
    """Host names and networks webhooks may reach; loopback too when `loopback` (auth off)."""

    def __init__(self, entries: str, loopback: bool) -> None:
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (e.strip() for e in entries.split(",")):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.names.add(entry.lower())
        self.loopback = loopback

    def check(self, url: str) -> None:
        """Raises WebhookRefused unless every address the URL's host resolves to is allowed."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookRefused("a webhook URL is http(s)://host/…")
        host = parts.hostname.lower()
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError as e:
            raise WebhookRefused(f"cannot resolve {host}: {e}") from None
        for info in infos:
            address = ipaddress.ip_address(info[4][0])
            if host in self.names or any(address in net for net in self.networks):
                continue
            if self.loopback and address.is_loopback:
                continue
            raise WebhookRefused(
                f"{host} ({address}) is not in webhook_allow; list the host or its network there to allow it"
            )


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance: float = 300.0) -> bool:
    """What a receiver does: recompute the signature, compare in constant time, refuse stale timestamps."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(time.time() - timestamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header)


class Sender:
    """Delivers webhook calls on its own thread, retrying failures with backoff."""

    def __init__(self, secret: bytes, allow: AllowList, timeout: float = 10.0) -> None:
        self.secret, self.allow, self.timeout = secret, allow, timeout
        self._cond = threading.Condition()
        self._pending: list[tuple[float, int, str, str, bytes]] = []  # a heap: the next due first
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="sdrest-webhooks", daemon=True)
        self.delivered = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def send(self, url: str, event: str, payload: Mapping[str, object]) -> None:
        body = msgspec.json.encode({"event": event, **payload})
        with self._cond:
            heapq.heappush(self._pending, (time.monotonic(), 0, url, event, body))
            self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._pending or self._pending[0][0] > time.monotonic()):
                    wait = self._pending[0][0] - time.monotonic() if self._pending else None
                    self._cond.wait(wait)
                if self._stopping:
                    return
                due, attempt, url, event, body = heapq.heappop(self._pending)
            try:
                delivered = self._deliver(url, event, body)
            except Exception:  # a bug must not end the thread: every later webhook would be lost
                log.exception("webhook to %s failed", urlsplit(url).hostname)
                delivered = False
            if not delivered and attempt < len(RETRY_DELAYS):
                with self._cond:
                    retry = (time.monotonic() + RETRY_DELAYS[attempt], attempt + 1, url, event, body)
                    heapq.heappush(self._pending, retry)

    def _deliver(self, url: str, event: str, body: bytes) -> bool:
        try:
            self.allow.check(url)
        except WebhookRefused as e:
            log.warning("webhook to %s not sent: %s", urlsplit(url).hostname, e)
            return True  # not retried: it will not become allowed by waiting
        request = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "User-Agent": "sdrest-webhook", "X-Sdrest-Event": event,
            "X-Sdrest-Signature": sign(self.secret, int(time.time()), body),
        })  # fmt: skip
        try:
            with _NO_REDIRECTS.open(request, timeout=self.timeout) as response:
                ok = 200 <= response.status < 300
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:  # HTTPException: not HTTP at all
            log.info("webhook to %s failed: %s", urlsplit(url).hostname, e)
            return False
        if ok:
            self.delivered += 1
        return ok


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead past the allow-list: webhooks do not follow them."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_NO_REDIRECTS = http_only.opener(_NoRedirect())
