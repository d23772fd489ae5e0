"""Bearer tokens: our own (HS256 access tokens and rotating refresh tokens) and an identity provider's (RS256/ES256).

A login yields a pair. The access token is a short-lived JWT checked without any look-up; the refresh token is an
opaque random string, stored only as its SHA-256, that buys a new pair once:

    login ──▶ family F: refresh token 1 ──refresh──▶ token 2 ──refresh──▶ token 3 …
                           │ presented again (someone kept a copy): the whole family F is revoked
    logout (`revoke`), a removed user or a new password (`revoke_subject`): the family, or all of a subject's, end

An access token names its family: once the family is revoked, the token is refused too (one indexed look-up per
request), so a logout or a removed user ends access at once, not when the token expires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import msgspec

from sdrest.auth import roles
from sdrest.auth.database import Database

log = logging.getLogger(__name__)

SECRET_BYTES = 32
_PRUNE_EVERY = 3600.0
# Only signatures a public key can check: an HMAC algorithm here would let anyone sign with the public key.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class InvalidToken(Exception):
    """A token that proves nothing; `reason` says why (never the token itself)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Claims(msgspec.Struct):
    """Who a verified token speaks for. `source` is "jwt" (ours), "idp", "api_key" or "pam"."""

    subject: str
    role: str
    expires_at: float
    source: str


class Tokens(msgspec.Struct):
    """A new pair, shaped like an OAuth 2 token response."""

    access_token: str
    refresh_token: str
    expires_in: int  # seconds the access token lives
    token_type: str = "Bearer"


_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.InvalidAudienceError, "wrong audience"),
    (jwt.InvalidIssuerError, "wrong issuer"),
    (jwt.InvalidAlgorithmError, "algorithm not allowed"),
    (jwt.InvalidSignatureError, "bad signature"),
    (jwt.ImmatureSignatureError, "not valid yet"),
    (jwt.InvalidIssuedAtError, "issued in the future"),
    (jwt.InvalidKeyError, "the key does not fit the algorithm"),
    (jwt.DecodeError, "malformed"),
]


def _invalid(error: jwt.PyJWTError) -> InvalidToken:
    if isinstance(error, jwt.MissingRequiredClaimError):
        return InvalidToken(f"missing claim {error.claim}")
    reason = next((text for cls, text in _REASONS if isinstance(error, cls)), "invalid")
    return InvalidToken(reason)


def load_or_create_secret(path: Path) -> bytes:
    """The signing secret in `path` (hex), made on first start: 32 random bytes in a file only the owner may read.
    A file others could read is tightened to 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_secret(path)
    secret = secrets.token_bytes(SECRET_BYTES)
    with os.fdopen(fd, "w") as file:
        file.write(secret.hex() + "\n")
        file.flush()
        os.fsync(file.fileno())
    return secret


def _read_secret(path: Path) -> bytes:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("secret file %s had mode %o; tightened to 600", path, mode)
        path.chmod(0o600)
    text = path.read_text(encoding="ascii").strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = _urlsafe_b64(text)
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{path} holds a secret of {len(secret)} bytes; it needs at least {SECRET_BYTES} (hex)")
    return secret


def _urlsafe_b64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return b""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _v1_refresh(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE refresh_families (
            family TEXT PRIMARY KEY,
            subject TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at REAL NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0
        )
        """
    )
    db.execute("CREATE INDEX refresh_families_subject ON refresh_families (subject)")
    db.execute(
        """
        CREATE TABLE refresh_tokens (
            digest TEXT PRIMARY KEY,
            family TEXT NOT NULL REFERENCES refresh_families (family),
            expires_at REAL NOT NULL,
            used_at REAL
        )
        """
    )
    db.execute("CREATE INDEX refresh_tokens_family ON refresh_tokens (family)")


class TokenIssuer:
    """Issues and checks our own tokens. `verify_access` reads SQLite (is the token's family revoked?); `issue`,
    `refresh` and the revocations write it. All blocking and thread-safe."""

    def __init__(
        self,
        secret: bytes,
        store_path: Path,
        *,
        issuer: str = "sdrest",
        audience: str = "sdrest",
        access_seconds: int = 900,
        refresh_seconds: int = 30 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError(f"the signing secret needs at least {SECRET_BYTES} bytes")
        self._secret = secret
        self.issuer, self.audience = issuer, audience
        self.access_seconds, self.refresh_seconds = access_seconds, refresh_seconds
        self._clock = clock
        self._db = Database(store_path, "refresh_tokens", [_v1_refresh])
        self._pruned_at = 0.0

    def issue(self, subject: str, role: str) -> Tokens:
        """A new pair starting a new refresh family (a login)."""
        if not subject:
            raise ValueError("a token needs a subject")
        roles.check(role)
        now = self._clock()
        family = uuid.uuid4().hex
        with self._db.tx() as db:
            self._prune(db, now)
            db.execute(
                "INSERT INTO refresh_families (family, subject, role, created_at) VALUES (?, ?, ?, ?)",
                (family, subject, role, now),
            )
            refresh_token = self._add_refresh(db, family, now)
        return Tokens(self._access(subject, role, now, family), refresh_token, self.access_seconds)

    def verify_access(self, token: str) -> Claims:
        """The claims of one of our access tokens; InvalidToken when it is not one, or not any more."""
        try:
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as error:
            raise _invalid(error) from None
        role = payload.get("role")
        if role not in roles.ROLES:
            raise InvalidToken("unknown role")
        family = payload.get("fam")
        if not isinstance(family, str):
            raise InvalidToken("no session")
        with self._db.read() as db:
            row = db.execute("SELECT revoked FROM refresh_families WHERE family = ?", (family,)).fetchone()
        if row is None or row[0]:
            raise InvalidToken("the session has ended (logged out or revoked)")
        return Claims(subject=str(payload["sub"]), role=role, expires_at=float(payload["exp"]), source="jwt")

    def refresh(self, refresh_token: str) -> Tokens:
        """Trade a refresh token for a new pair in its family. The presented token is spent: presenting it again
        revokes the family (someone else holds a copy) and raises InvalidToken."""
        now = self._clock()
        reused = False
        with self._db.tx() as db:
            row = db.execute(
                "SELECT t.family, t.expires_at, t.used_at, f.subject, f.role, f.revoked "
                "FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family WHERE t.digest = ?",
                (_digest(refresh_token),),
            ).fetchone()
            if row is None:
                raise InvalidToken("unknown refresh token")
            family, expires_at, used_at, subject, role, revoked = row
            if revoked:
                raise InvalidToken("revoked")
            if used_at is not None:
                db.execute("UPDATE refresh_families SET revoked = 1 WHERE family = ?", (family,))
                reused = True
            elif expires_at <= now:
                raise InvalidToken("expired")
            else:
                db.execute("UPDATE refresh_tokens SET used_at = ? WHERE digest = ?", (now, _digest(refresh_token)))
                new_refresh = self._add_refresh(db, family, now)
        if reused:  # after the commit: the revocation must stick
            log.warning("a spent refresh token of %r was presented again; that session is revoked", subject)
            raise InvalidToken("refresh token reused; the session is revoked")
        return Tokens(self._access(subject, role, now, family), new_refresh, self.access_seconds)

    def revoke(self, refresh_token: str) -> None:
        """Log out: end the family of `refresh_token`. An unknown token is already as good as revoked."""
        with self._db.tx() as db:
            db.execute(
                "UPDATE refresh_families SET revoked = 1 "
                "WHERE family = (SELECT family FROM refresh_tokens WHERE digest = ?)",
                (_digest(refresh_token),),
            )

    def revoke_subject(self, subject: str) -> None:
        """End every session of `subject`: when the user is removed, disabled, changes role or password."""
        with self._db.tx() as db:
            db.execute("UPDATE refresh_families SET revoked = 1 WHERE subject = ?", (subject,))

    def close(self) -> None:
        self._db.close()

    def _access(self, subject: str, role: str, now: float, family: str) -> str:
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role,
            "iat": int(now),
            "exp": int(now) + self.access_seconds,
            "jti": secrets.token_hex(8),
            "fam": family,  # the session: revoking it refuses this token too
        }
        return jwt.encode(payload, self._secret, algorithm="HS256")

    def _add_refresh(self, db: sqlite3.Connection, family: str, now: float) -> str:
        token = secrets.token_urlsafe(32)
        db.execute(
            "INSERT INTO refresh_tokens (digest, family, expires_at) VALUES (?, ?, ?)",
            (_digest(token), family, now + self.refresh_seconds),
        )
        return token

    def _prune(self, db: sqlite3.Connection, now: float) -> None:
        """Forget expired refresh tokens and the families left empty, at most once an hour. Tokens are kept an access
        token's lifetime past their expiry, so a family outlives every access token issued in it: a family that is
        gone means its tokens have expired."""
        if now - self._pruned_at < _PRUNE_EVERY:
            return
        self._pruned_at = now
        db.execute("DELETE FROM refresh_tokens WHERE expires_at <= ?", (now - self.access_seconds,))
        db.execute("DELETE FROM refresh_families WHERE family NOT IN (SELECT family FROM refresh_tokens)")


class ExternalVerifier:
    """Checks tokens an identity provider (Keycloak, Authentik, Auth0, …) signed, against its public key: a PEM
    public key or certificate, the bare base64 key Keycloak shows, or a JWKS document (keys picked by `kid`).

    The role comes from `role_claim`, a dotted path into the claims (`realm_access.roles` for Keycloak) holding a
    string or a list. Without `role_map` the values named like our roles count; with it, only the values it maps.
    The highest role wins; with none, `default_role`; with no default, the token is refused."""

    def __init__(
        self,
        public_key_file: Path,
        issuer: str,
        audience: str,
        role_claim: str = "role",
        algorithms: tuple[str, ...] = ("RS256", "ES256"),
        role_map: dict[str, str] | None = None,
        default_role: str | None = None,
        *,
        subject_claim: str = "sub",
        leeway: float = 30.0,
    ) -> None:
        refused = [a for a in algorithms if a not in ASYMMETRIC]
        if refused or not algorithms:
            raise ValueError(f"algorithms must be among {', '.join(ASYMMETRIC)}; refused: {', '.join(refused)}")
        for role in [*(role_map or {}).values(), *([default_role] if default_role else [])]:
            roles.check(role)
        self.issuer, self.audience, self.algorithms = issuer, audience, algorithms
        self.role_claim, self.role_map, self.default_role = role_claim, role_map, default_role
        self.subject_claim, self.leeway = subject_claim, leeway
        self._keys = _load_public_keys(public_key_file)

    def verify(self, token: str) -> Claims:
        """The claims of an identity provider's token (source "idp"); InvalidToken when it proves nothing."""
        try:
            key = self._key_for(jwt.get_unverified_header(token).get("kid"))
            allowed = [a for a in self.algorithms if a in _algorithms_for(key)]
            if not allowed:
                raise InvalidToken("algorithm not allowed")
            payload = jwt.decode(
                token,
                key,
                algorithms=allowed,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            raise _invalid(error) from None
        subject = _at(payload, self.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise InvalidToken(f"missing claim {self.subject_claim}")
        role = self._role(_at(payload, self.role_claim))
        return Claims(subject=subject, role=role, expires_at=float(payload["exp"]), source="idp")

    def _key_for(self, kid: object) -> Any:
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise InvalidToken("no key for this token's kid")

    def _role(self, value: object) -> str:
        if isinstance(value, str):
            names = [value]
        elif isinstance(value, list):
            names = [v for v in value if isinstance(v, str)]
        else:
            names = []
        if self.role_map is not None:
            names = [self.role_map[n] for n in names if n in self.role_map]
        role = roles.highest(names) or self.default_role
        if role is None:
            raise InvalidToken(f"no role in claim {self.role_claim} and no default role")
        return role


def _at(payload: dict[str, Any], dotted: str) -> object:
    value: object = payload
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _public(key: Any) -> Any:
    # A JWK with private parts still only ever checks signatures here.
    return key.public_key() if hasattr(key, "private_bytes") else key


def _algorithms_for(key: Any) -> tuple[str, ...]:
    """The algorithms a key of this kind can check: an RSA key must not be handed to ES256, nor an EC key to RS256."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ("ES256", "ES384", "ES512")
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    return ()


def _load_public_keys(path: Path) -> dict[str | None, Any]:
    """kid -> key; a PEM or bare key has the one kid None."""
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError as error:
        needed = "checking an identity provider's tokens needs cryptography: pip install 'pyjwt[crypto]'"
        raise RuntimeError(needed) from error
    text = path.read_text(encoding="ascii").strip()
    if text.startswith("{"):
        keys: dict[str | None, Any] = {}
        for jwk in jwt.PyJWKSet.from_dict(json.loads(text)).keys:
            if jwk.public_key_use in (None, "sig") and _algorithms_for(_public(jwk.key)):
                keys[jwk.key_id] = _public(jwk.key)
        if not keys:
            raise ValueError(f"{path} holds no public signing key")
        return keys
    if "-----BEGIN CERTIFICATE-----" in text:
        return {None: x509.load_pem_x509_certificate(text.encode()).public_key()}
    if "-----BEGIN" not in text:  # Keycloak's realm settings show the key as bare base64
        text = f"-----BEGIN PUBLIC KEY-----\n{text}\n-----END PUBLIC KEY-----"
    return {None: load_pem_public_key(text.encode())}
