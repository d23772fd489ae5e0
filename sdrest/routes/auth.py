"""`/api/v1/auth`: log in (local users or system accounts), refresh, log out, and who am I.

Login answers the tokens in JSON and also sets them as HttpOnly, SameSite=Strict cookies (Secure over HTTPS), so the
web UI holds a session without tokens in URLs or scripts. Failed logins are throttled per account and per address,
and an unknown user gets the same answer, after the same work, as a wrong password.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import msgspec
from msgspec import Meta
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest.access import REFRESH_COOKIE, SESSION_COOKIE, Authenticator, authenticator, principal_of
from sdrest.auth import system_accounts
from sdrest.auth.passwords import verify_dummy
from sdrest.auth.tokens import InvalidToken, Tokens
from sdrest.errors import Unauthorized, from_validation, json_response

log = logging.getLogger("sdrest.auth")


class Login(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class Refresh(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: str | None = None


async def _credentials(request: Request) -> Login:
    if request.headers.get("content-type", "").startswith(("application/x-www-form-urlencoded", "multipart/")):
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        try:
            return msgspec.convert(data, Login)
        except msgspec.ValidationError as e:
            raise from_validation(e) from e
    try:
        return msgspec.json.decode(await request.body(), type=Login)
    except (msgspec.ValidationError, msgspec.DecodeError) as e:
        raise from_validation(e) from e


def _check(auth: Authenticator, username: str, password: str) -> tuple[str, str] | None:
    """(name, role) when the password holds, by the enabled methods (local users first, then system accounts)."""
    if auth.users is not None:
        user = auth.users.authenticate(username, password)
        if user is not None:
            return user.name, user.role
    if "pam" in auth.methods:
        settings = auth.settings
        allowed = [g for g in settings.pam_allowed_groups.split(",") if g.strip()]
        admins = [g for g in settings.pam_admin_groups.split(",") if g.strip()]
        role = system_accounts.role_for(username, allowed, admins)
        if role is not None and system_accounts.authenticate(username, password, settings.pam_service):
            return username, role
        if role is None:
            verify_dummy(password)  # the same work as a wrong password, so timing tells nothing
    elif auth.users is None:
        verify_dummy(password)
    return None


def _with_cookies(request: Request, tokens: Tokens, auth: Authenticator) -> Response:
    response = json_response(tokens)
    secure = request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, tokens.access_token, max_age=tokens.expires_in, path="/", secure=secure,
                        httponly=True, samesite="strict")  # fmt: skip
    response.set_cookie(REFRESH_COOKIE, tokens.refresh_token, max_age=auth.settings.refresh_token_seconds,
                        path="/api/v1/auth", secure=secure, httponly=True, samesite="strict")  # fmt: skip
    return response


async def login(request: Request) -> Response:
    auth = authenticator(request)
    if auth.issuer is None:
        raise Unauthorized("logins are not enabled on this server (auth needs jwt or pam)")
    body = await _credentials(request)
    address = request.client.host if request.client else "?"
    wait = auth.throttle.delay(body.username, address)
    if wait > 0:
        await asyncio.sleep(wait)
    found = await run_in_threadpool(_check, auth, body.username, body.password)
    if found is None:
        auth.throttle.failure(body.username, address)
        log.warning("login failed for %r from %s", body.username, address)
        raise Unauthorized("wrong username or password")
    auth.throttle.success(body.username, address)
    name, role = found
    log.info("login: %s (%s) from %s", name, role, address)
    tokens = await run_in_threadpool(auth.issuer.issue, name, role)
    return _with_cookies(request, tokens, auth)


async def _refresh_token(request: Request) -> str | None:
    raw = await request.body()
    token = None
    if raw:
        try:
            token = msgspec.json.decode(raw, type=Refresh).refresh_token
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            raise from_validation(e) from e
    return token or request.cookies.get(REFRESH_COOKIE)


async def refresh(request: Request) -> Response:
    auth = authenticator(request)
    token = await _refresh_token(request)
    if auth.issuer is None or not token:
        raise Unauthorized("send a refresh_token (or the refresh cookie)")
    try:
        tokens = await run_in_threadpool(auth.issuer.refresh, token)
    except InvalidToken as e:
        log.warning("refresh refused: %s", e)
        raise Unauthorized(f"refresh refused: {e}") from e
    return _with_cookies(request, tokens, auth)


async def logout(request: Request) -> Response:
    auth = authenticator(request)
    token = await _refresh_token(request)
    if auth.issuer is not None and token:
        await run_in_threadpool(auth.issuer.revoke, token)
        log.info("logout: %s", principal_of(request.scope).name)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(REFRESH_COOKIE, path="/api/v1/auth")
    return response


async def me(request: Request) -> Response:
    principal = principal_of(request.scope)
    return json_response({"name": principal.name, "role": principal.role, "source": principal.source})


routes = [
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/refresh", refresh, methods=["POST"]),
    Route("/auth/logout", logout, methods=["POST"]),
    Route("/auth/me", me, methods=["GET"]),
]
