"""`/api/v1/keys` and `/api/v1/users`: the admin manages keys and local users over HTTP, what they make works at once,
what they end stops at once, nobody else may, and an admin cannot lock themselves out."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.test_api import FAST
from tests.test_auth import PASSWORD, _login, models, secured  # noqa: F401 (fixtures)


def test_keys_made_listed_and_revoked_over_http(secured: TestClient) -> None:  # noqa: F811
    admin = _login(secured, "root")
    made = secured.post("/api/v1/keys", json={"name": "ci", "role": "user", "expires_days": 30}, headers=admin)
    assert made.status_code == 201, made.text
    key, record = made.json()["key"], made.json()["record"]
    assert key.startswith("sdr_") and record["name"] == "ci" and record["prefix"] == key[:12]
    assert record["expires_at"] > record["created_at"] + 29 * 86400
    bearer = {"Authorization": f"Bearer {key}"}
    assert secured.get("/api/v1/auth/me", headers=bearer).json() == {"name": "ci", "role": "user", "source": "api_key"}
    listed = secured.get("/api/v1/keys", headers=admin).json()["keys"]
    assert [k["name"] for k in listed] == ["ci"] and key not in str(listed)  # never the key itself
    again = secured.post("/api/v1/keys", json={"name": "ci"}, headers=admin)
    assert again.status_code == 409 and again.json()["error"]["field"] == "$.name"
    bad = secured.post("/api/v1/keys", json={"name": "no spaces"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "$.name"
    assert secured.post("/api/v1/keys", json={"name": "x", "role": "root"}, headers=admin).status_code == 422
    revoked = secured.delete("/api/v1/keys/ci", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert secured.get("/api/v1/auth/me", headers=bearer).status_code == 401
    assert secured.delete("/api/v1/keys/ci", headers=admin).status_code == 404


def test_users_added_changed_and_removed_over_http(secured: TestClient) -> None:  # noqa: F811
    admin = _login(secured, "root")
    added = secured.post("/api/v1/users", json={"name": "carol", "password": PASSWORD}, headers=admin)
    assert added.status_code == 201 and added.json()["role"] == "user"
    assert "password" not in added.text
    carol = _login(secured, "carol")
    assert secured.post("/api/v1/generate", json=FAST, headers=carol).status_code == 202
    short = secured.post("/api/v1/users", json={"name": "dave", "password": "short"}, headers=admin)
    assert short.status_code == 422 and short.json()["error"]["field"] == "$.password"
    taken = secured.post("/api/v1/users", json={"name": "carol", "password": PASSWORD}, headers=admin)
    assert taken.status_code == 409
    # A change ends the user's sessions at once; the new role holds at the next login.
    promoted = secured.patch("/api/v1/users/carol", json={"role": "admin"}, headers=admin)
    assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
    assert secured.get("/api/v1/auth/me", headers=carol).status_code == 401
    assert secured.get("/api/v1/users", headers=_login(secured, "carol")).status_code == 200
    secured.patch("/api/v1/users/carol", json={"disabled": True}, headers=admin)
    refused = secured.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD})
    assert refused.status_code == 401
    secured.patch("/api/v1/users/carol", json={"disabled": False, "password": PASSWORD + "!"}, headers=admin)
    assert secured.post("/api/v1/auth/login", json={"username": "carol", "password": PASSWORD + "!"}).status_code == 200
    assert secured.delete("/api/v1/users/carol", headers=admin).status_code == 204
    assert [u["name"] for u in secured.get("/api/v1/users", headers=admin).json()["users"]] == ["alice", "bob", "root"]
    assert secured.delete("/api/v1/users/carol", headers=admin).status_code == 404
    assert secured.patch("/api/v1/users/carol", json={"role": "user"}, headers=admin).status_code == 404


def test_only_admins_and_never_against_themselves(secured: TestClient) -> None:  # noqa: F811
    alice, admin = _login(secured, "alice"), _login(secured, "root")
    for method, path in (("GET", "/api/v1/keys"), ("POST", "/api/v1/keys"), ("GET", "/api/v1/users"),
                         ("POST", "/api/v1/users"), ("PATCH", "/api/v1/users/alice"), ("DELETE", "/api/v1/users/bob"),
                         ("DELETE", "/api/v1/keys/x")):  # fmt: skip
        response = secured.request(method, path, json={"name": "x", "password": PASSWORD}, headers=alice)
        assert response.status_code == 403, (method, path)
    for change in ({"role": "user"}, {"disabled": True}):
        mine = secured.patch("/api/v1/users/root", json=change, headers=admin)
        assert mine.status_code == 409 and "yourself" in mine.json()["error"]["message"]
    assert secured.delete("/api/v1/users/root", headers=admin).status_code == 409
    # Their own password they may change (and their sessions end, as after any change).
    assert secured.patch("/api/v1/users/root", json={"password": PASSWORD + "?"}, headers=admin).status_code == 200
    assert secured.get("/api/v1/users", headers=admin).status_code == 401


def test_lists_say_when_a_method_is_off(models, data_dir) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    from tests.test_auth import _app

    with _app(models, data_dir) as client:  # auth = none: no keys, no users
        assert client.get("/api/v1/keys").json() == {"keys": [], "enabled": False}
        assert client.get("/api/v1/users").json() == {"users": [], "enabled": False}
        refused = client.post("/api/v1/keys", json={"name": "x"})
        assert refused.status_code == 404 and "api_key" in refused.json()["error"]["message"]
