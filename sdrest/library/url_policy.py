"""Which URLs a download may fetch from, what a server's refusal of a plain URL means to a user, and the origin
test that keeps a token from leaving the server it was meant for."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from urllib.parse import urlsplit

from sdrest.library.download_errors import DownloadError

NO_NETWORK_URL = "this machine has no network connection, or that server is down"


def allow_url(url: str) -> None:
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


def allow_any_http(url: str) -> None:
    """A hub mirror may be plain http on a LAN: HF_ENDPOINT was set by whoever runs the server."""
    if urlsplit(url).scheme.lower() not in ("http", "https"):
        raise DownloadError(f"the hub redirected to {url}, which is not an http(s) URL")


def url_explainer(url: str) -> Callable[[int], str]:
    """What an HTTP status met while fetching `url` means, in words a user can act on."""
    refused = f"{urlsplit(url).hostname} refused the download: the URL needs credentials, or it has expired"
    return lambda status: {401: refused, 403: refused, 404: f"nothing at {url} (HTTP 404)"}.get(
        status, f"{urlsplit(url).hostname} answered HTTP {status} for {url}"
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """The URL's scheme, host and port: credentials for one origin are never sent to another."""
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
