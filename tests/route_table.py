"""Every (method, path template) an app serves, from its route table: mounts are walked, plain routes taken as
they are. The docs test and the auth test walk this, so a route added later is covered without a new test."""

from __future__ import annotations

from typing import Any

from starlette.routing import Mount, Route


def app_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Mount):
            found += app_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            found += [(method, prefix + route.path) for method in sorted((route.methods or set()) - {"HEAD"})]
    return found
