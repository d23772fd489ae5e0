"""The auth library on its own: roles, password hashes, users, API keys, tokens, the login throttle, system accounts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from sdrest.auth import DB_NAME, passwords, roles, system_accounts
from sdrest.auth.api_keys import KeyStore, make_key
from sdrest.auth.throttle import LoginThrottle
from sdrest.auth.tokens import Claims, ExternalVerifier, InvalidToken, TokenIssuer, Tokens, load_or_create_secret
from sdrest.auth.users import User, UserExists, UserStore

SECRET = b"s" * 32


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A JWT assembled by hand, HMAC-SHA256 signed with `key` (or unsigned): what an attacker can send."""
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(payload).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest() if key is not None else b""
    return f"{signing_input}.{_b64url(signature)}"


def _stored_bytes(directory: Path) -> bytes:
    """Everything SQLite wrote: the database and its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.name.startswith(DB_NAME))


def _reason(excinfo: pytest.ExceptionInfo[InvalidToken]) -> str:
    return excinfo.value.reason


def test_the_auth_library_imports_no_starlette() -> None:
    modules = [f"sdrest.auth.{p.stem}" for p in sorted(Path(passwords.__file__).parent.glob("*.py"))]
    code = (
        f"import sys\nfor m in {modules!r}: __import__(m)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert len(modules) >= 9


# roles


def test_roles_are_ordered_admin_user_guest() -> None:
    assert roles.ROLES == ("admin", "user", "guest")
    assert roles.at_least("admin", "user") and roles.at_least("user", "user") and roles.at_least("guest", "guest")
    assert not roles.at_least("user", "admin") and not roles.at_least("guest", "user")
    assert not roles.at_least("root", "guest")  # an unknown role grants nothing
    with pytest.raises(ValueError):
        roles.at_least("admin", "superuser")
    assert roles.highest(["offline_access", "user", "guest"]) == "user"
    assert roles.highest(["uma_authorization"]) is None


# passwords


def test_password_hashes_are_salted_scrypt() -> None:
    encoded = passwords.hash_password("correct horse")
    assert re.fullmatch(r"scrypt\$16384\$8\$1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=", encoded)
    assert base64.b64decode(encoded.split("$")[4]).__len__() == 16
    assert passwords.hash_password("correct horse") != encoded
    assert passwords.verify_password("correct horse", encoded)
    assert not passwords.verify_password("correct horsE", encoded)
    assert not passwords.verify_password("", encoded)


def test_a_password_verifies_however_its_accents_were_typed() -> None:
    encoded = passwords.hash_password("caf\u00e9 au lait")  # é composed
    assert passwords.verify_password("cafe\u0301 au lait", encoded)  # e + combining accent


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plain",
        "bcrypt$2b$12$abc",
        "scrypt$16384$8$1$salt",
        "scrypt$16384$8$1$!!!$AAAA",
        "scrypt$16383$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "=",  # n not a power of two
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 43 + "=",  # a cost that would stall the server
        "scrypt$16384$8$1$$" + "A" * 43 + "=",  # no salt
    ],
)
def test_a_malformed_hash_verifies_nothing(encoded: str) -> None:
    assert passwords.verify_password("whatever1", encoded) is False


def test_the_dummy_hash_has_the_current_parameters() -> None:
    assert passwords._DUMMY.split("$")[:4] == ["scrypt", str(passwords.N), str(passwords.R), str(passwords.P)]


def test_verify_dummy_costs_what_a_real_verify_costs() -> None:
    encoded = passwords.hash_password("a real password")

    def median(call: Any) -> float:
        times = []
        for _ in range(5):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    real = median(lambda: passwords.verify_password("a wrong password", encoded))
    dummy = median(lambda: passwords.verify_dummy("a wrong password"))
    assert 0.5 < dummy / real < 2.0, (dummy, real)


# users


@pytest.fixture
def users(tmp_path: Path) -> Iterator[UserStore]:
    store = UserStore(tmp_path / DB_NAME)
    yield store
    store.close()


def test_users_add_authenticate_and_list(users: UserStore, tmp_path: Path) -> None:
    alice = users.add("alice", "password-1", "admin")
    assert isinstance(alice, User) and (alice.name, alice.role, alice.disabled) == ("alice", "admin", False)
    users.add("bob.smith_2-x", "password-2")
    assert users.authenticate("alice", "password-1") == alice
    assert users.authenticate("alice", "password-2") is None
    assert users.authenticate("Alice", "password-1") is None  # names are case-sensitive
    assert [u.name for u in users.list()] == ["alice", "bob.smith_2-x"]
    assert users.get("bob.smith_2-x") is not None and users.get("bob.smith_2-x").role == "user"  # type: ignore[union-attr]
    assert users.get("carol") is None
    assert b"password-1" not in _stored_bytes(tmp_path)
    reopened = UserStore(tmp_path / DB_NAME)
    assert reopened.authenticate("alice", "password-1") == alice
    reopened.close()


def test_an_unknown_user_costs_a_dummy_verify(users: UserStore, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = passwords.verify_dummy

    def spy(password: str) -> None:
        calls.append(password)
        real(password)

    monkeypatch.setattr(passwords, "verify_dummy", spy)
    assert users.authenticate("nobody-here", "password-1") is None
    assert calls == ["password-1"]


def test_user_names_passwords_and_roles_are_checked(users: UserStore) -> None:
    for name in ["", "a" * 65, "with space", "colon:name", "ünï", "a/b"]:
        with pytest.raises(ValueError, match="1 to 64"):
            users.add(name, "password-1")
    users.add("a" * 64, "password-1")
    with pytest.raises(ValueError, match="at least 8"):
        users.add("short", "1234567")
    with pytest.raises(ValueError, match="unknown role"):
        users.add("carol", "password-1", "root")
    users.add("carol", "password-1")
    with pytest.raises(UserExists):
        users.add("carol", "another-password")


def test_users_change_password_role_state_and_go(users: UserStore) -> None:
    users.add("dave", "password-1")
    users.set_password("dave", "password-2")
    assert users.authenticate("dave", "password-1") is None
    assert users.authenticate("dave", "password-2") is not None
    with pytest.raises(ValueError, match="at least 8"):
        users.set_password("dave", "short")
    assert users.set_role("dave", "guest").role == "guest"
    with pytest.raises(ValueError):
        users.set_role("dave", "owner")
    assert users.set_disabled("dave").disabled
    assert users.authenticate("dave", "password-2") is None  # disabled: the right password is not enough
    assert not users.set_disabled("dave", False).disabled
    assert users.authenticate("dave", "password-2") is not None
    users.remove("dave")
    assert users.get("dave") is None and users.authenticate("dave", "password-2") is None
    for change in (
        lambda: users.remove("dave"),
        lambda: users.set_password("dave", "password-3"),
        lambda: users.set_role("dave", "user"),
    ):
        with pytest.raises(KeyError):
            change()


# API keys

KEY_SHAPE = re.compile(r"sdr_[0-9a-f]{8}_[A-Za-z0-9_-]{32}")


def test_api_keys_verify_and_store_no_plaintext(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / DB_NAME)
    key, record = store.create("ci", "admin")
    assert KEY_SHAPE.fullmatch(key) and record.prefix == key[:12] and record.id == key[4:12]
    assert (record.name, record.role, record.source, record.revoked, record.last_used_at) == (
        "ci",
        "admin",
        "store",
        False,
        None,
    )
    verified = store.verify(key)
    assert verified is not None and (verified.id, verified.role) == (record.id, "admin")
    assert verified.last_used_at is not None
    secret = key[13:]
    assert store.verify(key[:13] + ("A" if secret[0] != "A" else "B") + secret[1:]) is None  # one character off
    assert store.verify(key + "x") is None and store.verify("") is None and store.verify("sdr_nothing") is None
    assert store.verify(make_key()) is None  # well formed, unknown id
    stored = _stored_bytes(tmp_path)
    assert key.encode() not in stored and secret.encode() not in stored
    assert hashlib.sha256(key.encode()).hexdigest().encode() in stored  # what is kept instead
    assert [k.name for k in store.list()] == ["ci"]
    store.close()


def test_api_keys_revoke_by_id_prefix_or_name(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / DB_NAME)
    keys = {name: store.create(name) for name in ("one", "two", "three")}
    with pytest.raises(ValueError, match="exists"):
        store.create("one")
    assert store.revoke(keys["one"][1].id).revoked
    assert store.revoke(keys["two"][1].prefix).name == "two"
    assert store.revoke("three").id == keys["three"][1].id
    for key, _ in keys.values():
        assert store.verify(key) is None
    assert all(k.revoked for k in store.list())
    with pytest.raises(KeyError):
        store.revoke("four")
    store.create("one")  # a revoked key's name is free again
    store.close()


def test_api_keys_expire_and_record_use_once_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    store = KeyStore(tmp_path / DB_NAME, clock=clock)
    with pytest.raises(ValueError, match="past"):
        store.create("late", expires_at=clock.now - 1)
    key, record = store.create("temp", expires_at=clock.now + 3600)
    assert store.verify(key) is not None
    assert store.list()[0].last_used_at == clock.now
    clock.now += 30
    assert store.verify(key).last_used_at == clock.now - 30  # type: ignore[union-attr]
    clock.now += 31
    assert store.verify(key).last_used_at == clock.now  # type: ignore[union-attr]
    clock.now = record.expires_at  # type: ignore[assignment]
    assert store.verify(key) is None
    store.close()


def test_api_keys_from_a_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bot, viewer = make_key(), make_key()
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# automation keys\n\nbot:admin:{bot}\n  viewer : guest : {viewer}\n")
    key_file.chmod(0o600)
    store = KeyStore(tmp_path / DB_NAME, key_file)
    found = store.verify(bot)
    assert found is not None and (found.name, found.role, found.source) == ("bot", "admin", "file")
    assert store.verify(viewer).role == "guest"  # type: ignore[union-attr]
    listed = {k.name: k for k in store.list()}
    assert listed["bot"].source == "file" and listed["bot"].prefix == bot[:12]
    with pytest.raises(ValueError, match="key file"):
        store.revoke("bot")
    key_file.write_text(f"viewer:guest:{viewer}\n")
    store.reload()
    assert store.verify(bot) is None and store.verify(viewer) is not None
    assert bot.encode() not in _stored_bytes(tmp_path)
    key_file.write_text(f"viewer:guest:{viewer}\nbroken:user:{bot[:-1]}\n")
    with pytest.raises(ValueError, match=r"keys.txt:2") as excinfo:
        store.reload()
    assert bot[:-1] not in str(excinfo.value)
    assert store.verify(viewer) is not None  # a broken file leaves the keys read before in force
    key_file.write_text(f"x:superuser:{bot}\n")
    with pytest.raises(ValueError, match="unknown role"):
        KeyStore(tmp_path / DB_NAME, key_file)
    key_file.write_text(f"bot:user:{bot}\n")
    key_file.chmod(0o644)
    with caplog.at_level("WARNING"):
        KeyStore(tmp_path / DB_NAME, key_file).close()
    assert "chmod 600" in caplog.text and bot not in caplog.text
    store.close()


def test_secrets_are_compared_in_constant_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    compared: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append(len(a))
        return real(a, b)

    store = KeyStore(tmp_path / DB_NAME)
    key, _ = store.create("ci")
    encoded = passwords.hash_password("password-1")
    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert store.verify(key) is not None
    assert compared == [64]  # the SHA-256 hex digests
    assert passwords.verify_password("password-1", encoded)
    assert compared == [64, 32]  # the scrypt outputs
    store.close()


# tokens


def test_the_secret_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "data" / "jwt-secret"
    secret = load_or_create_secret(path)
    assert len(secret) == 32
    assert path.stat().st_mode & 0o777 == 0o600
    assert bytes.fromhex(path.read_text().strip()) == secret
    assert load_or_create_secret(path) == secret
    path.chmod(0o644)
    assert load_or_create_secret(path) == secret
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text(_b64url(b"u" * 32))  # urlsafe base64 is read too
    assert load_or_create_secret(path) == b"u" * 32
    path.write_text("abcd")
    with pytest.raises(ValueError, match="at least 32"):
        load_or_create_secret(path)


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[TokenIssuer]:
    tokens = TokenIssuer(SECRET, tmp_path / DB_NAME)
    yield tokens
    tokens.close()


def test_access_tokens_verify(issuer: TokenIssuer) -> None:
    tokens = issuer.issue("alice", "admin")
    assert isinstance(tokens, Tokens) and tokens.token_type == "Bearer" and tokens.expires_in == 900
    claims = issuer.verify_access(tokens.access_token)
    assert isinstance(claims, Claims)
    assert (claims.subject, claims.role, claims.source) == ("alice", "admin", "jwt")
    assert time.time() + 890 < claims.expires_at <= time.time() + 900
    with pytest.raises(ValueError):
        issuer.issue("alice", "root")


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": "sdrest", "aud": "sdrest", "sub": "mallory", "role": "admin", "iat": now, "exp": now + 600} | changes


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (_forge({"alg": "none", "typ": "JWT"}, _claims(), None), "algorithm not allowed"),
        (_forge({"alg": "None", "typ": "JWT"}, _claims(), None), "algorithm not allowed"),
        (_forge({"alg": "HS256", "typ": "JWT"}, _claims(), b"k" * 32), "bad signature"),
        (jwt.encode(_claims(exp=int(time.time()) - 10), SECRET, "HS256"), "expired"),
        (jwt.encode(_claims(aud="another-service"), SECRET, "HS256"), "wrong audience"),
        (jwt.encode(_claims(iss="someone-else"), SECRET, "HS256"), "wrong issuer"),
        (jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET, "HS256"), "missing claim exp"),
        (jwt.encode({k: v for k, v in _claims().items() if k != "aud"}, SECRET, "HS256"), "missing claim aud"),
        (jwt.encode(_claims(role="root"), SECRET, "HS256"), "unknown role"),
        ("not.a.token", "malformed"),
        ("", "malformed"),
    ],
)
def test_access_tokens_that_prove_nothing(issuer: TokenIssuer, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as excinfo:
        issuer.verify_access(token)
    assert _reason(excinfo) == reason


def test_a_tampered_or_foreign_access_token_is_refused(issuer: TokenIssuer, tmp_path: Path) -> None:
    token = issuer.issue("guest1", "guest").access_token
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    elevated = _b64url(json.dumps(claims | {"role": "admin"}).encode())
    with pytest.raises(InvalidToken) as excinfo:
        issuer.verify_access(f"{header}.{elevated}.{signature}")
    assert _reason(excinfo) == "bad signature"
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(InvalidToken):
        issuer.verify_access(f"{header}.{payload}.{flipped}")
    for other in (
        TokenIssuer(SECRET, tmp_path / "other.sqlite3", audience="elsewhere"),
        TokenIssuer(SECRET, tmp_path / "other.sqlite3", issuer="elsewhere"),
        TokenIssuer(SECRET, tmp_path / "other.sqlite3", clock=lambda: time.time() - 3600),
        TokenIssuer(b"t" * 32, tmp_path / "other.sqlite3"),
    ):
        with pytest.raises(InvalidToken) as excinfo:
            issuer.verify_access(other.issue("alice", "admin").access_token)
        assert _reason(excinfo) in ("wrong audience", "wrong issuer", "expired", "bad signature")
        other.close()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_an_rs256_token_is_no_access_token(issuer: TokenIssuer, rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(InvalidToken) as excinfo:
        issuer.verify_access(jwt.encode(_claims(), rsa_key, "RS256"))
    assert _reason(excinfo) == "algorithm not allowed"


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(issuer: TokenIssuer, tmp_path: Path) -> None:
    first = issuer.issue("alice", "user")
    second = issuer.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert issuer.verify_access(second.access_token).subject == "alice"
    third = issuer.refresh(second.refresh_token)
    with pytest.raises(InvalidToken) as excinfo:
        issuer.refresh(first.refresh_token)  # a copy of a spent token: someone else has it
    assert "reused" in _reason(excinfo)
    with pytest.raises(InvalidToken) as excinfo:
        issuer.refresh(third.refresh_token)  # so the whole family ends, the newest token too
    assert _reason(excinfo) == "revoked"
    with pytest.raises(InvalidToken) as excinfo:
        issuer.refresh(secrets.token_urlsafe(32))
    assert _reason(excinfo) == "unknown refresh token"
    stored = _stored_bytes(tmp_path)
    assert all(t.encode() not in stored for t in (first.refresh_token, second.refresh_token, third.refresh_token))


def test_only_one_of_two_racing_refreshes_wins(issuer: TokenIssuer) -> None:
    token = issuer.issue("alice", "user").refresh_token
    results: list[str] = []

    def attempt() -> None:
        try:
            issuer.refresh(token)
            results.append("ok")
        except InvalidToken as e:
            results.append(e.reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1


def test_logout_and_subject_revocation(issuer: TokenIssuer) -> None:
    session = issuer.issue("alice", "user")
    issuer.revoke(session.refresh_token)
    with pytest.raises(InvalidToken, match="revoked"):
        issuer.refresh(session.refresh_token)
    issuer.revoke("never-issued")  # logging out twice, or with junk, is harmless
    phone, laptop, other = issuer.issue("bob", "user"), issuer.issue("bob", "user"), issuer.issue("carol", "user")
    issuer.revoke_subject("bob")
    for session in (phone, laptop):
        with pytest.raises(InvalidToken, match="revoked"):
            issuer.refresh(session.refresh_token)
    assert issuer.refresh(other.refresh_token).refresh_token


def test_refresh_tokens_expire(tmp_path: Path) -> None:
    clock = Clock(time.time())
    issuer = TokenIssuer(SECRET, tmp_path / DB_NAME, refresh_seconds=60, clock=clock)
    tokens = issuer.issue("alice", "user")
    clock.now += 59
    tokens = issuer.refresh(tokens.refresh_token)  # each new refresh token lives refresh_seconds again
    clock.now += 60
    with pytest.raises(InvalidToken, match="expired"):
        issuer.refresh(tokens.refresh_token)
    issuer.close()


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        TokenIssuer(b"short", tmp_path / DB_NAME)


# tokens from an identity provider


@pytest.fixture
def idp_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "idp.pem"
    path.write_bytes(_public_pem(rsa_key))
    return path


def _idp_claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": "https://keycloak.example/realms/art",
        "aud": "sdrest",
        "sub": "4a1c-uuid",
        "preferred_username": "alice",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": ["offline_access", "user", "admin", "uma_authorization"]},
    }
    return claims | changes


def _keycloak(key_file: Path, **options: Any) -> ExternalVerifier:
    return ExternalVerifier(key_file, "https://keycloak.example/realms/art", "sdrest", "realm_access.roles", **options)


def test_an_idp_rs256_token_is_accepted_with_its_role(idp_key_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    claims = _keycloak(idp_key_file).verify(jwt.encode(_idp_claims(), rsa_key, "RS256"))
    assert (claims.subject, claims.role, claims.source) == ("4a1c-uuid", "admin", "idp")
    named = _keycloak(idp_key_file, subject_claim="preferred_username")
    assert named.verify(jwt.encode(_idp_claims(), rsa_key, "RS256")).subject == "alice"


def test_idp_roles_map_default_and_absence(idp_key_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    groups = _idp_claims(realm_access={"roles": ["artists", "viewers"]})
    mapped = _keycloak(idp_key_file, role_map={"artists": "user", "viewers": "guest", "admin": "guest"})
    assert mapped.verify(jwt.encode(groups, rsa_key, "RS256")).role == "user"
    # With a map, only mapped names count: an unrelated client's "admin" role is not ours.
    assert mapped.verify(jwt.encode(_idp_claims(), rsa_key, "RS256")).role == "guest"
    plain = ExternalVerifier(idp_key_file, "https://keycloak.example/realms/art", "sdrest")  # role_claim "role"
    assert plain.verify(jwt.encode(_idp_claims(role="user"), rsa_key, "RS256")).role == "user"
    with pytest.raises(InvalidToken, match="no role"):
        _keycloak(idp_key_file).verify(jwt.encode(groups, rsa_key, "RS256"))
    with_default = _keycloak(idp_key_file, default_role="guest")
    assert with_default.verify(jwt.encode(groups, rsa_key, "RS256")).role == "guest"
    with pytest.raises(ValueError):
        _keycloak(idp_key_file, role_map={"artists": "owner"})


def test_an_hs256_token_signed_with_the_public_key_is_refused(idp_key_file: Path) -> None:
    """The algorithm-confusion attack: the public key is public, so an HMAC over it proves nothing."""
    verifier = _keycloak(idp_key_file)
    for key in (idp_key_file.read_bytes(), idp_key_file.read_bytes().strip()):
        token = _forge({"alg": "HS256", "typ": "JWT"}, _idp_claims(), key)
        with pytest.raises(InvalidToken) as excinfo:
            verifier.verify(token)
        assert _reason(excinfo) == "algorithm not allowed"
    with pytest.raises(ValueError, match="refused: HS256"):
        _keycloak(idp_key_file, algorithms=("RS256", "HS256"))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"aud": "grafana"}, "wrong audience"),
        ({"iss": "https://evil.example/realms/art"}, "wrong issuer"),
        ({"exp": int(time.time()) - 120}, "expired"),  # past the 30 s leeway for clock skew
        ({"sub": None}, "missing claim sub"),
    ],
)
def test_idp_tokens_that_prove_nothing(
    idp_key_file: Path, rsa_key: rsa.RSAPrivateKey, changes: dict[str, Any], reason: str
) -> None:
    claims = {k: v for k, v in (_idp_claims() | changes).items() if v is not None}
    with pytest.raises(InvalidToken) as excinfo:
        _keycloak(idp_key_file).verify(jwt.encode(claims, rsa_key, "RS256"))
    assert _reason(excinfo) == reason


def test_an_idp_token_signed_by_another_key_is_refused(idp_key_file: Path) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken) as excinfo:
        _keycloak(idp_key_file).verify(jwt.encode(_idp_claims(), stranger, "RS256"))
    assert _reason(excinfo) == "bad signature"


def test_idp_keys_as_ec_pem_bare_base64_and_jwks(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_file = tmp_path / "ec.pem"
    ec_file.write_bytes(_public_pem(ec_key))
    assert _keycloak(ec_file).verify(jwt.encode(_idp_claims(), ec_key, "ES256")).role == "admin"
    bare = tmp_path / "bare.txt"  # what Keycloak's realm settings show: the key without its PEM lines
    bare.write_text("".join(_public_pem(rsa_key).decode().splitlines()[1:-1]))
    assert _keycloak(bare).verify(jwt.encode(_idp_claims(), rsa_key, "RS256")).role == "admin"
    jwks = tmp_path / "jwks.json"
    keys = []
    for kid, key, alg in (("rsa-1", rsa_key, "RS256"), ("ec-1", ec_key, "ES256")):
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
        keys.append(jwk | {"kid": kid, "use": "sig", "alg": alg})
    jwks.write_text(json.dumps({"keys": keys}))
    verifier = _keycloak(jwks)
    assert verifier.verify(jwt.encode(_idp_claims(), rsa_key, "RS256", headers={"kid": "rsa-1"})).role == "admin"
    assert verifier.verify(jwt.encode(_idp_claims(), ec_key, "ES256", headers={"kid": "ec-1"})).role == "admin"
    with pytest.raises(InvalidToken, match="kid"):
        verifier.verify(jwt.encode(_idp_claims(), rsa_key, "RS256", headers={"kid": "unknown"}))
    with pytest.raises(InvalidToken):  # the RSA key's kid on an EC signature
        verifier.verify(jwt.encode(_idp_claims(), ec_key, "ES256", headers={"kid": "rsa-1"}))


# the login throttle


def test_throttle_delays_grow_and_cap() -> None:
    clock = Clock()
    throttle = LoginThrottle(base_delay=0.5, max_delay=4.0, window=900.0, clock=clock)
    waits = []
    for _ in range(9):
        waits.append(throttle.delay("alice", "10.0.0.1"))
        throttle.failure("alice", "10.0.0.1")
    waits.append(throttle.delay("alice", "10.0.0.1"))
    assert waits == [0, 0, 0, 0.5, 1, 2, 4, 4, 4, 4]
    clock.now += 3
    assert throttle.delay("alice", "10.0.0.1") == 1  # the wait counts from the last failure
    assert throttle.delay("ALICE", "10.9.9.9") == 1  # the account's own count, whatever the case or address
    assert throttle.delay("bob", "10.0.0.1") == 1  # the address's count, whatever the account
    assert throttle.delay("bob", "10.9.9.9") == 0
    clock.now += 900
    assert throttle.delay("alice", "10.0.0.1") == 0  # failures leave the window


def test_throttle_success_clears_the_account_and_its_address_failures() -> None:
    clock = Clock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(5):
        throttle.failure("alice", "10.0.0.1")
    assert throttle.delay("alice", "10.0.0.1") > 0
    throttle.success("alice", "10.0.0.1")
    assert throttle.delay("alice", "10.0.0.1") == 0
    for account in ("bob", "carol", "dave", "erin", "frank"):  # one address guessing at many accounts
        throttle.failure(account, "10.6.6.6")
    throttle.success("mallory", "10.6.6.6")  # logging into one's own account buys no fresh guesses
    assert throttle.delay("mallory", "10.6.6.6") > 0


def test_throttle_forgets_the_oldest_beyond_its_bound() -> None:
    throttle = LoginThrottle(clock=Clock(), max_keys=10)
    for i in range(4):
        throttle.failure("target", f"10.0.0.{i}")
    for i in range(20):
        throttle.failure(f"user{i}", "10.1.1.1")
    assert len(throttle._failures) <= 10
    assert throttle.delay("target", "10.2.2.2") == 0  # evicted
    assert throttle.delay("user19", "10.2.2.2") == 0 and throttle.delay("x", "10.1.1.1") > 0


# system accounts


def test_groups_and_roles_of_system_accounts() -> None:
    assert "root" in system_accounts.groups_of("root")
    assert system_accounts.groups_of("no-such-account-xyz") == set()
    assert system_accounts.role_for("root", [], ["root"]) == "admin"
    assert system_accounts.role_for("root", [], []) == "user"  # no allowed groups: any account
    assert system_accounts.role_for("root", ["no-such-group"], ["no-such-group-either"]) is None
    assert system_accounts.role_for("no-such-account-xyz", [], []) is None


def test_shadow_problem_names_the_user_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:
        assert system_accounts.shadow_problem() is None
    monkeypatch.setattr(system_accounts.os, "geteuid", lambda: 65534)
    monkeypatch.setattr(system_accounts.os, "access", lambda path, mode: False)
    monkeypatch.setattr(system_accounts.os.path, "exists", lambda path: True)
    problem = system_accounts.shadow_problem()
    assert problem is not None
    name = system_accounts.pwd.getpwuid(65534).pw_name
    assert f"sudo usermod -aG shadow {name}" in problem and "unix_chkpwd" in problem and "root" in problem


def test_system_accounts_authenticate_through_pam() -> None:
    if os.geteuid() != 0 or not shutil.which("useradd") or not Path("/etc/pam.d").is_dir():
        pytest.skip("needs root, useradd and /etc/pam.d to make a throwaway account")
    name = f"sdrest-test-{secrets.token_hex(3)}"
    password = f"pw-{secrets.token_urlsafe(12)}"
    # Our own service without pam_unix's two-second pause after a failure, so the test stays fast.
    service = Path("/etc/pam.d") / name
    try:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
        subprocess.run(["chpasswd"], input=f"{name}:{password}", text=True, check=True)
        service.write_text("auth required pam_unix.so nodelay\naccount required pam_unix.so\n")
        assert system_accounts.authenticate(name, password, service=name)
        assert not system_accounts.authenticate(name, password + "x", service=name)
        assert not system_accounts.authenticate(name, "", service=name)
        assert not system_accounts.authenticate("no-such-account-xyz", password, service=name)
        assert system_accounts.authenticate(name, password)  # the default service falls back to /etc/pam.d/other
        groups = system_accounts.groups_of(name)
        assert groups, "every account has a primary group"
        assert system_accounts.role_for(name, [], sorted(groups)) == "admin"
        assert system_accounts.role_for(name, ["root"], []) is None
    finally:
        service.unlink(missing_ok=True)
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_an_ended_session_refuses_its_access_tokens_at_once(issuer: TokenIssuer) -> None:
    kept, ended = issuer.issue("alice", "user"), issuer.issue("alice", "user")
    issuer.revoke(ended.refresh_token)  # log out one session
    with pytest.raises(InvalidToken):
        issuer.verify_access(ended.access_token)
    assert issuer.verify_access(kept.access_token).subject == "alice"
    issuer.revoke_subject("alice")  # a removed user, a new password: every session
    with pytest.raises(InvalidToken):
        issuer.verify_access(kept.access_token)
    # A token without a session (signed with our secret, made by hand) is no access token either.
    with pytest.raises(InvalidToken):
        issuer.verify_access(jwt.encode(_claims(), SECRET, "HS256"))
