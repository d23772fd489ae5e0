"""The three roles and their order: an admin may do what a user may, a user what a guest may."""

from __future__ import annotations

from collections.abc import Iterable

ROLES = ("admin", "user", "guest")
_RANK = {role: len(ROLES) - i for i, role in enumerate(ROLES)}


def check(role: str) -> str:
    """`role` itself when it is one of ROLES; ValueError otherwise."""
    if role not in _RANK:
        raise ValueError(f"unknown role {role!r}: expected one of {', '.join(ROLES)}")
    return role


def at_least(role: str, needed: str) -> bool:
    """Whether `role` grants what `needed` grants. An unknown `role` grants nothing; an unknown `needed` is a bug."""
    return _RANK.get(role, 0) >= _RANK[check(needed)]


def highest(roles: Iterable[str]) -> str | None:
    """The highest of the known roles among `roles`; None when there is none."""
    known = [r for r in roles if r in _RANK]
    return max(known, key=_RANK.__getitem__) if known else None
