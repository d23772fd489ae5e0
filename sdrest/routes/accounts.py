"""`/api/v1/keys` and `/api/v1/users`: the admin's API keys and local users, what `sdrest keys` and `sdrest users` do
on the command line, for the web UI and scripts. Admin only (`access.required_role`).

A key's plaintext is answered once, when it is made, and kept nowhere. Any change to a user (password, role,
disabled, removed) ends their sessions at once. An admin cannot demote, disable or remove themselves, so a server is
never left without the admin who was using it.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

import msgspec
from msgspec import Meta
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sdrest.access import authenticator, principal_of
from sdrest.auth.api_keys import ApiKey, KeyStore
from sdrest.auth.users import User, UserExists, UserStore
from sdrest.errors import Conflict, Invalid, NotFound, decode_body, json_response

Role = Literal["admin", "user", "guest"]


class NewKey(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    role: Role = "user"
    expires_days: Annotated[float, Meta(gt=0, le=36500)] | None = None  # None: never


class CreatedKey(msgspec.Struct):
    key: str  # the plaintext: shown this once
    record: ApiKey


class KeyList(msgspec.Struct):
    keys: list[ApiKey]
    enabled: bool = True  # False: the auth setting has no api_key (the list is then empty)


class NewUser(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(max_length=1024)]
    role: Role = "user"


class UserChange(msgspec.Struct, forbid_unknown_fields=True):
    password: Annotated[str, Meta(max_length=1024)] | None = None
    role: Role | None = None
    disabled: bool | None = None


class UserList(msgspec.Struct):
    users: list[User]
    enabled: bool = True  # False: the auth setting has no jwt (the list is then empty)


def _keys(request: Request) -> KeyStore:
    store = authenticator(request).keys
    if store is None:
        raise NotFound("API keys are not enabled on this server (add api_key to the auth setting)")
    return store


def _users(request: Request) -> UserStore:
    store = authenticator(request).users
    if store is None:
        raise NotFound("local users are not enabled on this server (add jwt to the auth setting)")
    return store


async def list_keys(request: Request) -> Response:
    store = authenticator(request).keys
    if store is None:
        return json_response(KeyList([], enabled=False))
    return json_response(KeyList(await run_in_threadpool(store.list)))


async def create_key(request: Request) -> Response:
    store, new = _keys(request), decode_body(await request.body(), NewKey)
    expires = time.time() + new.expires_days * 86400 if new.expires_days else None
    try:
        key, record = await run_in_threadpool(store.create, new.name, new.role, expires)
    except ValueError as e:
        raise (Conflict if "exists" in str(e) else Invalid)(str(e), field="$.name") from e
    return json_response(CreatedKey(key, record), status=201)


async def revoke_key(request: Request) -> Response:
    wanted = request.path_params["key"]
    try:
        record = await run_in_threadpool(_keys(request).revoke, wanted)
    except KeyError:
        raise NotFound(f"no stored key {wanted!r} (an id, prefix or name)") from None
    except ValueError as e:  # from the key file
        raise Conflict(str(e)) from e
    return json_response(record)


async def list_users(request: Request) -> Response:
    store = authenticator(request).users
    if store is None:
        return json_response(UserList([], enabled=False))
    return json_response(UserList(await run_in_threadpool(store.list)))


async def create_user(request: Request) -> Response:
    store, new = _users(request), decode_body(await request.body(), NewUser)
    try:
        user = await run_in_threadpool(store.add, new.name, new.password, new.role)
    except UserExists as e:
        raise Conflict(str(e), field="$.name") from e
    except ValueError as e:
        raise Invalid(str(e), field="$.password" if "password" in str(e) else "$.name") from e
    return json_response(user, status=201)


def _end_sessions(request: Request, name: str) -> None:
    issuer = authenticator(request).issuer
    if issuer is not None:
        issuer.revoke_subject(name)


def _not_yourself(request: Request, name: str, change: str) -> None:
    me = principal_of(request.scope)
    if me.name == name and me.source not in ("api_key", "none"):
        raise Conflict(f"you cannot {change} yourself; another admin can")


async def change_user(request: Request) -> Response:
    store, name, change = _users(request), request.path_params["name"], decode_body(await request.body(), UserChange)
    if change.role not in (None, "admin") or change.disabled:
        _not_yourself(request, name, "demote or disable")

    def apply() -> User:
        if store.get(name) is None:
            raise NotFound(f"no user {name!r}")
        if change.password is not None:
            try:
                store.set_password(name, change.password)
            except ValueError as e:
                raise Invalid(str(e), field="$.password") from e
        if change.role is not None:
            store.set_role(name, change.role)
        if change.disabled is not None:
            store.set_disabled(name, change.disabled)
        _end_sessions(request, name)
        found = store.get(name)
        assert found is not None
        return found

    return json_response(await run_in_threadpool(apply))


async def remove_user(request: Request) -> Response:
    store, name = _users(request), request.path_params["name"]
    _not_yourself(request, name, "remove")

    def remove() -> None:
        try:
            store.remove(name)
        except KeyError:
            raise NotFound(f"no user {name!r}") from None
        _end_sessions(request, name)

    await run_in_threadpool(remove)
    return Response(status_code=204)


routes = [
    Route("/keys", list_keys, methods=["GET"]),
    Route("/keys", create_key, methods=["POST"]),
    Route("/keys/{key}", revoke_key, methods=["DELETE"]),
    Route("/users", list_users, methods=["GET"]),
    Route("/users", create_user, methods=["POST"]),
    Route("/users/{name}", change_user, methods=["PATCH"]),
    Route("/users/{name}", remove_user, methods=["DELETE"]),
]
