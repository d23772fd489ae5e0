"""Who is asking, and may they: the HTTP side of authentication.

`Authenticator` turns a request's credentials (a Bearer token or API key, `X-API-Key`, HTTP Basic, the session
cookie) into a `Principal` with the methods the `auth` setting enables; `AccessControl` is the one middleware
that guards every route: public routes pass, everything else needs a principal whose role the route's rule
allows (`required_role`), and a browser's cookie session must come with a same-origin `Origin` for unsafe methods.
A route added later is guarded by the same rule without anyone remembering to (a test walks the route table).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from http.cookies import SimpleCookie
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sdrest import errors
from sdrest.auth import roles
from sdrest.auth.api_keys import KeyStore
from sdrest.auth.methods import parse_methods
from sdrest.auth.throttle import LoginThrottle
from sdrest.auth.tokens import ExternalVerifier, InvalidToken, TokenIssuer, load_or_create_secret
from sdrest.auth.users import UserStore
from sdrest.settings import Settings

log = logging.getLogger("sdrest.auth")
SESSION_COOKIE, REFRESH_COOKIE = "sdrest_session", "sdrest_refresh"
PUBLIC = {("GET", "/api/v1/health"), ("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/refresh"),
          ("GET", "/"), ("HEAD", "/")}  # fmt: skip
# Image URLs handed to OpenAI clients carry their own expiring signature (checked by their route), because the
# clients that fetch them (browsers, LibreChat) send no credentials.
PUBLIC_PREFIXES = (("GET", "/v1/files/"), ("HEAD", "/v1/files/"),
                   # The web UI's files (its API calls are guarded like anyone's; it shows a login form on a 401).
                   ("GET", "/ui/"), ("HEAD", "/ui/"))  # fmt: skip
_SAFE = ("GET", "HEAD", "OPTIONS")
_ADMIN_READS = ("/api/v1/models/remote", "/api/v1/models/directories", "/api/v1/trash", "/api/v1/system", "/metrics")
_ACCOUNTS = ("/api/v1/keys", "/api/v1/users")
_MANAGED = ("/api/v1/models", "/api/v1/presets", "/api/v1/prompts", "/api/v1/neg_prompts")


class Principal(msgspec.Struct, frozen=True):
    """Who a request acts as: `source` is how they proved it (api_key, jwt, pam, idp, cookie, basic, none, guest)."""

    name: str
    role: str
    source: str

    @property
    def viewer(self) -> str | None:
        """The owner whose jobs this principal sees: None for admins (every job), else their own name."""
        return None if self.role == "admin" else self.name


NOBODY = Principal("anonymous", "admin", "none")  # auth = none: everything is allowed, as on a private machine
# Not a name an account can have (see auth.users/api_keys `_NAME`): a user or key called "guest" must not share its
# jobs with every anonymous reader.
GUEST = Principal("(guest)", "guest", "guest")


class AuthError(Exception):
    """Credentials were sent but do not hold; the message says why (never the secret itself)."""


def required_role(method: str, path: str) -> str:
    """The least role a route needs: model management is the admin's (reading the library is anyone's), submitting
    jobs is a user's, reading is a guest's. Accounts are the admin's alone."""
    if path.startswith(_ADMIN_READS) or path.startswith(_ACCOUNTS):
        return "admin"
    if path.startswith(_MANAGED):
        return "guest" if method in _SAFE else "admin"
    return "guest" if method in _SAFE else "user"


class Authenticator:
    """The enabled methods' stores and verifiers. Blocking (SQLite, scrypt): call from threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.methods = parse_methods(settings.auth)
        data = settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        self.open = "none" in self.methods
        self.optional = "optional" in self.methods
        self.keys = KeyStore(data / "auth.sqlite3", settings.api_key_file) if "api_key" in self.methods else None
        self.users = UserStore(data / "auth.sqlite3") if "jwt" in self.methods else None
        self.issuer: TokenIssuer | None = None
        if self.methods & {"jwt", "pam"}:
            secret = load_or_create_secret(data / "jwt-secret")
            self.issuer = TokenIssuer(
                secret,
                data / "auth.sqlite3",
                access_seconds=settings.access_token_seconds,
                refresh_seconds=settings.refresh_token_seconds,
            )
        self.idp: ExternalVerifier | None = None
        if "idp" in self.methods:
            if settings.idp_public_key_file is None:
                raise ValueError("auth = idp needs idp_public_key_file (and idp_issuer, idp_audience)")
            self.idp = ExternalVerifier(
                settings.idp_public_key_file, settings.idp_issuer, settings.idp_audience, settings.idp_role_claim
            )
        self.throttle = LoginThrottle()

    def identify(self, headers: dict[str, str], cookies: dict[str, str], address: str = "") -> Principal | None:
        """The principal the credentials prove, None when none were sent. Raises AuthError for bad ones. `address`
        (the client's) throttles password guesses sent as HTTP Basic, as logins are."""
        authorization = headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value:
            return self._bearer(value.strip())
        if scheme.lower() == "basic" and value:
            return self._basic(value.strip(), address)
        if key := headers.get("x-api-key"):
            return self._api_key(key.strip())
        if token := cookies.get(SESSION_COOKIE):
            principal = self._token(token)
            return Principal(principal.name, principal.role, "cookie")
        return None

    def _api_key(self, key: str) -> Principal:
        if self.keys is None:
            raise AuthError("API keys are not enabled on this server")
        record = self.keys.verify(key)
        if record is None:
            raise AuthError("unknown, revoked or expired API key")
        return Principal(record.name, record.role, "api_key")

    def _token(self, token: str) -> Principal:
        reasons = []
        for verifier in (self.issuer, self.idp):
            if verifier is None:
                continue
            try:
                claims = verifier.verify_access(token) if isinstance(verifier, TokenIssuer) else verifier.verify(token)
            except InvalidToken as e:
                reasons.append(str(e))
                continue
            return Principal(claims.subject, claims.role, claims.source)
        raise AuthError("; ".join(reasons) or "tokens are not enabled on this server")

    def _bearer(self, value: str) -> Principal:
        # OpenAI clients send API keys as Bearer tokens.
        if value.startswith("sdr_"):
            return self._api_key(value)
        return self._token(value)

    def _basic(self, value: str, address: str) -> Principal:
        # AUTOMATIC1111 clients send HTTP Basic: an API key as the password, or a local user's own password.
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthError("malformed Basic credentials") from None
        if password.startswith("sdr_") and self.keys is not None:
            return self._api_key(password)
        if self.users is not None:
            if (wait := self.throttle.delay(user, address)) > 0:
                raise AuthError(f"too many failed attempts; try again in {wait:.0f} s")
            found = self.users.authenticate(user, password)
            if found is not None:
                self.throttle.success(user, address)
                return Principal(found.name, found.role, "basic")
            self.throttle.failure(user, address)
        raise AuthError("wrong username, password or key")


def _cookies(raw: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is the client's problem: treat it as no cookies
        return {}
    return {k: v.value for k, v in jar.items()}


class AccessControl:
    """The middleware that guards every route (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        cors_origins: tuple[str, ...] = (),
        shapes: tuple[tuple[str, Callable[[errors.ApiError], Response]], ...] = (),
    ) -> None:
        """`shapes`: (path prefix, renderer) for API families whose clients expect their own error shape."""
        self.app = app
        self.auth = authenticator
        self.cors_origins = cors_origins
        self.shapes = shapes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        if any(method == m and path.startswith(prefix) for m, prefix in PUBLIC_PREFIXES):  # not even looked at
            scope["principal"] = GUEST
            await self.app(scope, receive, send)
            return
        if self.auth.open:  # auth = none: credentials are not even looked at (OpenAI clients always send a key)
            scope["principal"] = NOBODY
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cookies = _cookies(headers.get("cookie", ""))
        try:
            principal = await run_in_threadpool(self.auth.identify, headers, cookies, _client(scope))
        except AuthError as e:
            if (method, path) in PUBLIC:
                principal = None
            else:
                log.info("refused %s %s from %s: %s", method, path, _client(scope), e)
                await self._deny(errors.Unauthorized(str(e)), scope, receive, send)
                return
        if principal is None:
            principal = GUEST if self.auth.optional else None  # (auth = none returned above)
        scope["principal"] = principal
        if (method, path) in PUBLIC:
            await self.app(scope, receive, send)
            return
        if principal is None:
            await self._deny(errors.Unauthorized("authentication required"), scope, receive, send)
            return
        needed = required_role(method, path)
        if not roles.at_least(principal.role, needed):
            await self._deny(
                errors.Forbidden(f"this needs the {needed} role; you are {principal.role}"), scope, receive, send
            )
            return
        if principal.source == "cookie" and method not in _SAFE and not self._same_origin(headers, scope):
            await self._deny(
                errors.Forbidden("cross-site request refused (send the Origin header)"), scope, receive, send
            )
            return
        await self.app(scope, receive, send)

    def _same_origin(self, headers: dict[str, str], scope: Scope) -> bool:
        origin = headers.get("origin")
        if origin is None:
            return False
        own = f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"
        return origin == own or origin in self.cors_origins

    async def _deny(self, error: errors.ApiError, scope: Scope, receive: Receive, send: Send) -> None:
        render = next((shape for prefix, shape in self.shapes if scope["path"].startswith(prefix)), None)
        response = render(error) if render is not None else errors.json_response(error.body(), error.status)
        if error.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="sdrest", Basic realm="sdrest"'
        await response(scope, receive, send)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else "?"


def authenticator(request: Any) -> Authenticator:
    """The app's Authenticator (its key, user and token stores)."""
    found: Authenticator = request.app.state.authenticator
    return found


def is_public(method: str, path: str) -> bool:
    """Whether a route answers without credentials (the UI's files, health, signed image URLs, login)."""
    return (method, path) in PUBLIC or any(method == m and path.startswith(prefix) for m, prefix in PUBLIC_PREFIXES)


def principal_of(scope: Any) -> Principal:
    """The request's principal (set by AccessControl; without the middleware, nobody checks: full access)."""
    found = scope.get("principal") if hasattr(scope, "get") else None
    return found if isinstance(found, Principal) else NOBODY


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def unsafe_bind(settings: Settings) -> str | None:
    """Why the server must not start: serving another address than loopback with no authentication, unless the
    administrator said so."""
    if settings.host in LOOPBACK or settings.host.startswith("127.") or settings.allow_unauthenticated:
        return None
    if parse_methods(settings.auth) == {"none"}:
        return (
            f"refusing to serve {settings.host} with auth = none: anyone who reaches the port could use it; "
            'set auth (e.g. auth = "api_key") or allow_unauthenticated = true'
        )
    return None
