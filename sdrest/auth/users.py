"""Accounts kept by sdrest itself: a name, a role, a scrypt password hash, and a switch to disable them.

Names are 1–64 characters of `A-Z a-z 0-9 . _ -`, case-sensitive like Linux account names, so the name a token
carries is the name every method takes.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import msgspec

from sdrest.auth import passwords, roles
from sdrest.auth.database import Database

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class UserExists(Exception):
    """`add` with a name that is taken."""


class User(msgspec.Struct):
    name: str
    role: str
    created_at: float
    disabled: bool = False


def _v1_users(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE users (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL,
            password TEXT NOT NULL,
            created_at REAL NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0
        )
        """
    )


_COLUMNS = "name, role, created_at, disabled"


def _user(row: tuple[str, str, float, int]) -> User:
    return User(name=row[0], role=row[1], created_at=row[2], disabled=bool(row[3]))


class UserStore:
    """The user table. Every method blocks (SQLite; scrypt in `add`, `set_password` and `authenticate`)."""

    def __init__(self, path: Path) -> None:
        self._db = Database(path, "users", [_v1_users])

    def add(self, name: str, password: str, role: str = "user") -> User:
        if not _NAME.fullmatch(name):
            raise ValueError("a user name is 1 to 64 characters of letters, digits, '.', '_' and '-'")
        roles.check(role)
        user = User(name=name, role=role, created_at=time.time())
        encoded = passwords.hash_password(_checked(password))
        try:
            with self._db.tx() as db:
                db.execute(
                    "INSERT INTO users (name, role, password, created_at) VALUES (?, ?, ?, ?)",
                    (name, role, encoded, user.created_at),
                )
        except sqlite3.IntegrityError:
            raise UserExists(f"a user named {name!r} exists") from None
        return user

    def set_password(self, name: str, password: str) -> None:
        """Replace the password. The caller also revokes the user's sessions (`TokenIssuer.revoke_subject`)."""
        self._update(name, "password", passwords.hash_password(_checked(password)))

    def set_role(self, name: str, role: str) -> User:
        return self._update(name, "role", roles.check(role))

    def set_disabled(self, name: str, disabled: bool = True) -> User:
        """A disabled user keeps their account but cannot log in."""
        return self._update(name, "disabled", int(disabled))

    def remove(self, name: str) -> None:
        with self._db.tx() as db:
            if db.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount == 0:
                raise KeyError(name)

    def list(self) -> list[User]:
        with self._db.read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def get(self, name: str) -> User | None:
        with self._db.read() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row else None

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs and the account is enabled; None otherwise. Costs one scrypt verify
        whether or not the account exists."""
        with self._db.read() as db:
            row = db.execute(f"SELECT {_COLUMNS}, password FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            passwords.verify_dummy(password)
            return None
        user = _user(row[:4])
        if not passwords.verify_password(password, row[4]) or user.disabled:
            return None
        return user

    def close(self) -> None:
        self._db.close()

    def _update(self, name: str, column: str, value: object) -> User:
        with self._db.tx() as db:
            if db.execute(f"UPDATE users SET {column} = ? WHERE name = ?", (value, name)).rowcount == 0:
                raise KeyError(name)
            row = db.execute(f"SELECT {_COLUMNS} FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row)


def _checked(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise ValueError(f"a password has at most {MAX_PASSWORD} characters")
    return password
