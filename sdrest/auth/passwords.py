"""Password hashes with scrypt from the standard library: memory-hard, salted, compared in constant time.

An encoded hash reads `scrypt$16384$8$1$<salt base64>$<hash base64>`: the cost parameters travel with the hash,
so raising them later leaves older hashes verifiable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata

N, R, P = 2**14, 8, 1  # 16 MiB and about 50 ms a hash: OWASP's floor for scrypt
SALT_BYTES, HASH_BYTES = 16, 32
# Verifying a stored hash runs whatever cost it names; these bounds keep a corrupt row from taking the server down.
_MAX_N, _MAX_R, _MAX_P = 2**20, 32, 16
# A hash of a random password nobody knows, with the current parameters: verify_dummy's work (a test keeps the
# parameters in step with N, R, P).
_DUMMY = "scrypt$16384$8$1$204hd2P5QoJCf3t/GWhFEg==$4Ivl7vR3K5bYZy/07nn2zN7To1Z6PInEv6gcWzPAkps="


def hash_password(password: str) -> str:
    """A new salted scrypt hash of `password`, encoded with its parameters."""
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(password, salt, N, R, P, HASH_BYTES)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches `encoded`; False for a malformed or unsupported hash."""
    parsed = _parse(encoded)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def verify_dummy(password: str) -> None:
    """Spend what a real verify costs and learn nothing: for unknown accounts, so that the time a login takes does
    not tell whether the account exists."""
    verify_password(password, _DUMMY)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # NFKC: the same password typed on two keyboards (composed or decomposed accents) gives the same bytes.
    secret = unicodedata.normalize("NFKC", password).encode("utf-8")
    return hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=length, maxmem=128 * r * (n + p + 2) + 2**20)


def _parse(encoded: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
    if not (1 < n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except binascii.Error:
        return None
    if not salt or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
