"""The `auth` setting: which authentication methods a server enables."""

from __future__ import annotations

METHODS = ("none", "optional", "api_key", "jwt", "pam", "idp")


def parse_methods(text: str) -> set[str]:
    methods = {m.strip() for m in text.split(",") if m.strip()}
    unknown = methods - set(METHODS)
    if unknown:
        raise ValueError(f"auth: unknown method(s) {', '.join(sorted(unknown))}; choose from {', '.join(METHODS)}")
    if "none" in methods and len(methods) > 1:
        raise ValueError("auth: 'none' cannot be combined with other methods")
    return methods or {"none"}
