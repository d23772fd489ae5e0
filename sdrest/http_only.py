"""A urllib opener that speaks only HTTP(S): neither a URL nor a redirect can reach file:, ftp: or data:."""

from __future__ import annotations

import urllib.request


def opener(redirects: urllib.request.HTTPRedirectHandler | None = None) -> urllib.request.OpenerDirector:
    """The opener, following redirects with `redirects` (urllib's own handler by default)."""
    built = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(),
        urllib.request.HTTPHandler(),
        urllib.request.HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(),
        redirects or urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        built.add_handler(handler)
    return built
