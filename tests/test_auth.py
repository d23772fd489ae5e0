"""Authentication and roles over HTTP: every route guarded by the one middleware, each method, roles and job owners,
browser sessions with CSRF protection, throttled logins, and secrets kept out of the log."""

from __future__ import annotations

import base64
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sdrest.access import PUBLIC, PUBLIC_PREFIXES
from sdrest.app import create_app
from sdrest.cli import main
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.route_table import app_routes
from tests.test_api import FAST

PASSWORD = "correct horse battery"


@pytest.fixture
def models(library: Library) -> Library:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    return library


def _cli(data_dir: Path, *args: str, stdin: str = "") -> str:
    import contextlib
    import io
    import sys

    out = io.StringIO()
    old = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            assert main([*args, "--data-dir", str(data_dir)]) == 0
    finally:
        sys.stdin = old
    return out.getvalue()


def _app(models: Library, data_dir: Path, **settings: object) -> TestClient:
    config = load_settings({"models_dir": models.root, "data_dir": data_dir, **settings}, env={})
    return TestClient(create_app(config, engine=FakeEngine()))  # type: ignore[arg-type]


@pytest.fixture
def secured(models: Library, data_dir: Path) -> Iterator[TestClient]:
    _cli(data_dir, "users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")
    _cli(data_dir, "users", "add", "bob", "--password-stdin", stdin=PASSWORD + "\n")
    _cli(data_dir, "users", "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    with _app(models, data_dir, auth="api_key,jwt") as client:
        yield client


def _login(client: TestClient, name: str) -> dict[str, str]:
    response = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.cookies.clear()  # these tests use the bearer token; cookie sessions have their own test
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _routes(client: TestClient) -> list[tuple[str, str]]:
    return [(method, re.sub(r"\{[^}]+\}", "x", path)) for method, path in app_routes(client.app.routes)]  # type: ignore[attr-defined]


def test_every_route_but_the_public_ones_needs_credentials(secured: TestClient) -> None:
    routes = _routes(secured)
    assert len(routes) > 40
    for method, path in routes:
        response = secured.request(method, path)
        if (method, path) in PUBLIC or any(method == m and path.startswith(p) for m, p in PUBLIC_PREFIXES):
            assert response.status_code != 401 or path.endswith(("login", "refresh")), (method, path)
            continue
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"].startswith("Bearer")
        body = response.json()
        # The A1111 family answers in its own shape (tests/test_openai_api.py checks each family's).
        assert (
            body["detail"] == "authentication required"
            if path.startswith("/sdapi/")
            else body["error"]["code"] == "unauthorized"
        )


def test_api_keys_as_bearer_header_and_basic_password(secured: TestClient, data_dir: Path) -> None:
    key = _cli(data_dir, "keys", "create", "script").strip()
    assert key.startswith("sdr_")
    for headers in (
        {"Authorization": f"Bearer {key}"},
        {"X-API-Key": key},
        {"Authorization": "Basic " + base64.b64encode(f"any:{key}".encode()).decode()},
    ):
        response = secured.get("/api/v1/jobs", headers=headers)
        assert response.status_code == 200, (headers, response.text)
    listing = _cli(data_dir, "keys", "list")
    assert "script" in listing and key not in listing
    prefix = listing.split()[0]
    _cli(data_dir, "keys", "revoke", prefix)
    assert secured.get("/api/v1/jobs", headers={"X-API-Key": key}).status_code == 401
    assert secured.get("/api/v1/jobs", headers={"X-API-Key": key[:-1] + "x"}).status_code == 401
    raw = (data_dir / "auth.sqlite3").read_bytes()
    assert key.encode() not in raw  # stored only as a hash


def test_login_me_refresh_rotation_and_logout(secured: TestClient) -> None:
    response = secured.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    tokens = response.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0
    secured.cookies.clear()
    me = secured.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}).json()
    assert me == {"name": "alice", "role": "user", "source": "jwt"}
    fresh = secured.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}).json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    reused = secured.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert reused.status_code == 401  # a refresh token works once; reuse revokes the family
    assert secured.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]}).status_code == 401
    again = secured.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {again['access_token']}"}
    assert (
        secured.post("/api/v1/auth/logout", json={"refresh_token": again["refresh_token"]}, headers=headers).status_code
        == 204
    )
    assert secured.post("/api/v1/auth/refresh", json={"refresh_token": again["refresh_token"]}).status_code == 401
    # The access token of the ended session is refused at once, not when it expires.
    after = secured.get("/api/v1/auth/me", headers=headers)
    assert after.status_code == 401 and "session has ended" in after.json()["error"]["message"]
    # So is one whose refresh token was reused (someone kept a copy: the whole session ends).
    assert (
        secured.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}).status_code == 401
    )
    tampered = again["access_token"][:-2] + ("AA" if not again["access_token"].endswith("AA") else "BB")
    assert secured.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {tampered}"}).status_code == 401


def test_unknown_user_and_wrong_password_answer_alike(secured: TestClient) -> None:
    def attempt(name: str) -> tuple[int, dict, float]:
        start = time.perf_counter()
        response = secured.post("/api/v1/auth/login", json={"username": name, "password": "wrong password"})
        return response.status_code, response.json(), time.perf_counter() - start

    known = attempt("bob")
    unknown = attempt(f"nobody-{uuid.uuid4().hex[:6]}")
    assert known[:2] == unknown[:2] and known[0] == 401
    assert 0.3 < known[2] / unknown[2] < 3  # both pay for one password hash


def test_logins_are_throttled_with_growing_delays(secured: TestClient) -> None:
    throttle = secured.app.state.authenticator.throttle  # type: ignore[attr-defined]
    for _ in range(5):
        secured.post("/api/v1/auth/login", json={"username": "bob", "password": "nope nope"})
    first = throttle.delay("bob", "testclient")
    secured.post("/api/v1/auth/login", json={"username": "bob", "password": "nope nope"})
    assert throttle.delay("bob", "testclient") > first > 0
    assert throttle.delay("bob", "elsewhere") > 0  # per account, from any address


def test_roles_user_cannot_manage_models_admin_can(secured: TestClient) -> None:
    user, admin = _login(secured, "alice"), _login(secured, "root")
    assert secured.get("/api/v1/models", headers=user).status_code == 200
    refused = secured.post("/api/v1/models/refresh", headers=user)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
    assert secured.post("/api/v1/models/refresh", headers=admin).status_code == 200
    assert secured.get("/api/v1/system", headers=user).status_code == 403


def test_users_see_only_their_own_jobs(secured: TestClient) -> None:
    alice, bob, root = _login(secured, "alice"), _login(secured, "bob"), _login(secured, "root")
    job = secured.post("/api/v1/generate", json=FAST, headers=alice).json()
    done = secured.get(f"/api/v1/jobs/{job['id']}", headers=alice).json()
    deadline = time.monotonic() + 10
    while done["status"] != "completed" and time.monotonic() < deadline:
        time.sleep(0.02)
        done = secured.get(f"/api/v1/jobs/{job['id']}", headers=alice).json()
    url = done["outputs"][0]["url"]
    base = f"/api/v1/jobs/{job['id']}"
    for method, path in (("GET", base), ("GET", url), ("GET", f"{base}/events"), ("POST", f"{base}/cancel"),
                         ("DELETE", base)):  # fmt: skip
        assert secured.request(method, path, headers=bob).status_code == 404, (method, path)
    assert secured.get("/api/v1/jobs", headers=bob).json()["total"] == 0
    assert secured.get("/api/v1/jobs", headers=alice).json()["total"] == 1
    assert secured.get(url, headers=root).status_code == 200  # admins see every job
    assert secured.delete(f"/api/v1/jobs/{job['id']}", headers=alice).status_code == 204


def test_browser_session_cookie_with_csrf_protection(secured: TestClient) -> None:
    response = secured.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    cookie = response.headers.get_list("set-cookie")[0]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert secured.get("/api/v1/jobs").status_code == 200  # the cookie alone reads
    assert secured.post("/api/v1/generate", json=FAST).status_code == 403  # no Origin: refused
    evil = secured.post("/api/v1/generate", json=FAST, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403
    ok = secured.post("/api/v1/generate", json=FAST, headers={"Origin": "http://testserver"})
    assert ok.status_code == 202
    with secured.stream("GET", f"/api/v1/jobs/{ok.json()['id']}/events?heartbeat=0.2") as events:
        assert events.status_code == 200  # SSE works under the cookie session
        for line in events.iter_lines():
            if line.startswith("event: completed"):
                break


def test_optional_mode_reads_as_guest(models: Library, data_dir: Path) -> None:
    with _app(models, data_dir, auth="optional,api_key") as client:
        assert client.get("/api/v1/health").status_code == 200
        assert client.get("/api/v1/models").status_code == 200
        assert client.get("/api/v1/auth/me").json()["role"] == "guest"
        assert client.post("/api/v1/generate", json=FAST).status_code == 403
        key = _cli(data_dir, "keys", "create", "w", "--role", "user").strip()
        job = client.post("/api/v1/generate", json=FAST, headers={"X-API-Key": key}).json()
        listed = client.get("/api/v1/jobs", headers={"X-API-Key": key}).json()["jobs"]
        assert job["status"] == "queued" and job["id"] in [j["id"] for j in listed]


def test_no_auth_on_another_address_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path), "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert code == 1 and "refusing to serve 0.0.0.0 with auth = none" in err and err.count("\n") == 1


def test_cors_lists_origins_and_never_star(models: Library, data_dir: Path) -> None:
    with _app(models, data_dir, cors_origins="https://ui.example") as client:
        ok = client.options(
            "/api/v1/jobs", headers={"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"}
        )
        assert ok.headers["access-control-allow-origin"] == "https://ui.example"
        assert ok.headers["access-control-allow-credentials"] == "true"
        other = client.options(
            "/api/v1/jobs", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
        )
        assert other.headers.get("access-control-allow-origin") is None
    with pytest.raises(ValueError, match="cannot be"):
        _app(models, data_dir, cors_origins="*")


def test_secrets_never_reach_the_log(secured: TestClient, data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = _cli(data_dir, "keys", "create", "logged").strip()
    tokens = secured.post("/api/v1/auth/login", json={"username": "alice", "password": PASSWORD}).json()
    secured.post("/api/v1/auth/login", json={"username": "alice", "password": "a wrong secret"})
    secured.get("/api/v1/jobs", headers={"X-API-Key": key + "x"})
    text = caplog.text
    assert "login: alice" in text and "login failed for 'alice'" in text
    for secret in (PASSWORD, "a wrong secret", key, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in text


def _can_make_accounts() -> str | None:
    if os.geteuid() != 0:
        return "PAM tests need root to create a system account (CI runs as root)"
    if shutil.which("useradd") is None or shutil.which("chpasswd") is None:
        return "useradd/chpasswd are not installed"
    return None


@pytest.mark.skipif(_can_make_accounts() is not None, reason=str(_can_make_accounts()))
def test_pam_login_with_a_real_system_account(models: Library, data_dir: Path) -> None:
    name = f"sdrtest{uuid.uuid4().hex[:6]}"
    group = f"sdradm{uuid.uuid4().hex[:4]}"
    subprocess.run(["groupadd", group], check=True)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "-G", group, name], check=True)
    try:
        subprocess.run(["chpasswd"], input=f"{name}:{PASSWORD}\n", text=True, check=True)
        with _app(models, data_dir, auth="pam", pam_admin_groups=group) as client:
            good = client.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
            assert good.status_code == 200, good.text
            client.cookies.clear()
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {good.json()['access_token']}"})
            assert me.json() == {"name": name, "role": "admin", "source": "jwt"}
            bad = client.post("/api/v1/auth/login", json={"username": name, "password": "wrong"})
            assert bad.status_code == 401
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", group], check=False)


def test_with_auth_off_credentials_are_ignored(models: Library, data_dir: Path) -> None:
    """OpenAI clients always send a key; with auth = none it must not matter what it is."""
    with _app(models, data_dir) as client:
        assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer anything"}).status_code == 200
        assert client.get("/v1/models", headers={"Authorization": "Bearer sk-whatever"}).status_code == 200


def test_an_account_named_guest_shares_nothing_with_anonymous_readers(models: Library, data_dir: Path) -> None:
    key = _cli(data_dir, "keys", "create", "guest").strip()
    with _app(models, data_dir, auth="api_key,optional") as client:
        job = client.post("/api/v1/generate", json=FAST, headers={"Authorization": f"Bearer {key}"}).json()
        assert client.get("/api/v1/jobs", headers={"Authorization": f"Bearer {key}"}).json()["total"] == 1
        anonymous = client.get("/api/v1/jobs")
        assert anonymous.status_code == 200 and anonymous.json()["total"] == 0
        assert client.get(f"/api/v1/jobs/{job['id']}").status_code == 404


def test_a1111_progress_shows_only_your_own_running_job(models: Library, data_dir: Path) -> None:
    alice = {"Authorization": f"Bearer {_cli(data_dir, 'keys', 'create', 'alice').strip()}"}
    bob = {"Authorization": f"Bearer {_cli(data_dir, 'keys', 'create', 'bob').strip()}"}
    with _app(models, data_dir, auth="api_key") as client:
        job = client.post("/api/v1/generate", json={**FAST, "prompt": "slow", "steps": 4}, headers=alice).json()
        deadline = time.monotonic() + 10
        while client.get(f"/api/v1/jobs/{job['id']}", headers=alice).json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        mine = client.get("/sdapi/v1/progress", headers=alice).json()
        assert mine["state"]["job"] == job["id"]
        theirs = client.get("/sdapi/v1/progress", headers=bob).json()
        assert theirs["state"]["job"] == "" and theirs["current_image"] is None and theirs["state"]["job_count"] == 1
        client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=alice)


def test_passwords_guessed_over_basic_are_throttled_like_logins(secured: TestClient) -> None:
    def basic(password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"alice:{password}".encode()).decode()}

    for _ in range(3):  # free failures
        assert secured.get("/api/v1/auth/me", headers=basic("guess")).status_code == 401
    refused = secured.get("/api/v1/auth/me", headers=basic(PASSWORD))  # right, but after three wrong ones at once
    assert refused.status_code == 401 and "too many failed attempts" in refused.json()["error"]["message"]
