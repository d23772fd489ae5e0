"""API keys: `sdr_<8 hex id>_<32 urlsafe secret>`, shown once and stored only as a SHA-256 of the whole key.

The id travels in the key, so verifying is one look-up and one constant-time comparison; `sdr_<id>` (the prefix)
names a key in listings without giving it away. A plain SHA-256 is enough here, unlike for passwords: the secret is
192 random bits, beyond any guessing. Keys also come from an optional key file for automation, one `name:role:key`
a line (`#` starts a comment); they verify like stored keys, list with `source="file"`, and go away with their
line (`reload()`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from sdrest.auth import roles
from sdrest.auth.database import Database

log = logging.getLogger(__name__)

LAST_USED_EVERY = 60.0  # seconds: a busy key costs one write a minute, not one a request
_KEY = re.compile(r"sdr_([0-9a-f]{8})_[A-Za-z0-9_-]{32}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ApiKey(msgspec.Struct):
    """What is known about a key, never the key itself."""

    id: str
    name: str
    role: str
    prefix: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool
    source: str = "store"  # "store" (made by `create`) or "file" (a line of the key file)


def make_key() -> str:
    """A new random key in the `sdr_<id>_<secret>` shape (what `create` returns; also for writing key files)."""
    return f"sdr_{secrets.token_hex(4)}_{secrets.token_urlsafe(24)}"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _v1_keys(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            role TEXT NOT NULL,
            prefix TEXT NOT NULL,
            digest TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL,
            last_used_at REAL,
            revoked INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX api_keys_name ON api_keys (name)")


_COLUMNS = "id, name, role, prefix, created_at, expires_at, last_used_at, revoked"


def _key(row: tuple[Any, ...]) -> ApiKey:
    key_id, name, role, prefix, created_at, expires_at, last_used_at, revoked = row[:8]
    return ApiKey(key_id, name, role, prefix, created_at, expires_at, last_used_at, bool(revoked))


class KeyStore:
    """Stored keys plus the key file's. Every method blocks (SQLite, the key file); all are thread-safe."""

    def __init__(self, path: Path, key_file: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self._db = Database(path, "api_keys", [_v1_keys])
        self._key_file = key_file
        self._clock = clock
        self._file_lock = threading.Lock()
        self._file_keys: dict[str, tuple[ApiKey, str]] = {}  # id -> (key, digest)
        self.reload()

    def create(self, name: str, role: str = "user", expires_at: float | None = None) -> tuple[str, ApiKey]:
        """A new key: the plaintext (shown once, kept nowhere) and its record. Names are unique among keys that are
        not revoked."""
        if not _NAME.fullmatch(name):
            raise ValueError("a key name is 1 to 64 characters of letters, digits, '.', '_' and '-'")
        roles.check(role)
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            raise ValueError("expires_at is in the past")
        with self._db.tx() as db:
            if db.execute("SELECT 1 FROM api_keys WHERE name = ? AND revoked = 0", (name,)).fetchone():
                raise ValueError(f"a key named {name!r} exists; revoke it first")
            while True:
                plaintext = make_key()
                key_id = plaintext[4:12]
                taken = db.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone()
                if not taken and key_id not in self._file_keys:
                    break
            record = ApiKey(key_id, name, role, f"sdr_{key_id}", now, expires_at, None, False)
            db.execute(
                f"INSERT INTO api_keys ({_COLUMNS}, digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key_id, name, role, record.prefix, now, expires_at, None, 0, _digest(plaintext)),
            )
        return plaintext, record

    def list(self) -> list[ApiKey]:
        """Stored keys, oldest first, then the key file's."""
        with self._db.read() as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at").fetchall()
        with self._file_lock:
            from_file = [msgspec.structs.replace(key) for key, _ in self._file_keys.values()]
        return [_key(r) for r in rows] + from_file

    def revoke(self, id_or_prefix_or_name: str) -> ApiKey:
        """Revoke a stored key named by its id, its prefix or (among keys not yet revoked) its name. KeyError when
        no stored key matches; ValueError for a key-file key (remove its line instead)."""
        wanted = id_or_prefix_or_name
        with self._db.tx() as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ? OR prefix = ?", (wanted, wanted)).fetchone()
            if row is None:
                query = f"SELECT {_COLUMNS} FROM api_keys WHERE name = ? AND revoked = 0"
                row = db.execute(query, (wanted,)).fetchone()
            if row is not None:
                db.execute("UPDATE api_keys SET revoked = 1 WHERE id = ?", (row[0],))
                return msgspec.structs.replace(_key(row), revoked=True)
        with self._file_lock:
            if any(wanted in (k.id, k.prefix, k.name) for k, _ in self._file_keys.values()):
                raise ValueError(f"{wanted!r} comes from the key file: remove its line there and reload")
        raise KeyError(wanted)

    def verify(self, key: str) -> ApiKey | None:
        """The key's record when `key` is a live key (known, not revoked, not expired); None otherwise."""
        match = _KEY.fullmatch(key)
        if match is None:
            return None
        key_id, digest, now = match[1], _digest(key), self._clock()
        with self._file_lock:
            entry = self._file_keys.get(key_id)
            if entry is not None and hmac.compare_digest(entry[1], digest):
                record = entry[0]
                if record.last_used_at is None or now - record.last_used_at >= LAST_USED_EVERY:
                    record.last_used_at = now
                return msgspec.structs.replace(record)
        with self._db.read() as db:
            row = db.execute(f"SELECT {_COLUMNS}, digest FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row[8], digest):
            return None
        record = _key(row[:8])
        if record.revoked or (record.expires_at is not None and record.expires_at <= now):
            return None
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_EVERY:
            record.last_used_at = now
            with self._db.tx() as db:
                db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))
        return record

    def reload(self) -> None:
        """Read the key file again. A malformed file raises ValueError (naming the line, never the key) and the keys
        read before stay in force; a missing file means no file keys."""
        if self._key_file is None:
            return
        loaded = _read_key_file(self._key_file)
        with self._file_lock:
            for key_id, (record, digest) in loaded.items():
                old = self._file_keys.get(key_id)
                if old is not None and old[1] == digest:
                    record.last_used_at = old[0].last_used_at
            self._file_keys = loaded

    def close(self) -> None:
        self._db.close()


def _read_key_file(path: Path) -> dict[str, tuple[ApiKey, str]]:
    try:
        stat = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        log.warning("API key file %s does not exist: no keys from it", path)
        return {}
    if stat.st_mode & 0o077:
        log.warning("API key file %s can be read by other users: chmod 600 it", path)
    keys: dict[str, tuple[ApiKey, str]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        parts = [p.strip() for p in line.split(":", 2)]
        if len(parts) != 3:
            raise ValueError(f"{where}: expected name:role:key")
        name, role, key = parts
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: a key name is 1 to 64 characters of letters, digits, '.', '_' and '-'")
        if role not in roles.ROLES:
            raise ValueError(f"{where}: unknown role {role!r}: expected one of {', '.join(roles.ROLES)}")
        match = _KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"{where}: the key is not of the form sdr_<8 hex digits>_<32 characters of A-Za-z0-9_->")
        key_id = match[1]
        if key_id in keys:
            raise ValueError(f"{where}: a second key with id {key_id}")
        record = ApiKey(key_id, name, role, f"sdr_{key_id}", stat.st_mtime, None, None, False, source="file")
        keys[key_id] = (record, _digest(key))
    return keys
