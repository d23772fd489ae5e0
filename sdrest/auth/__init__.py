"""Who is asking: users, API keys, our own tokens, an identity provider's tokens and system accounts.

The HTTP layer builds on these modules; none of them imports Starlette, and every store method blocks (SQLite,
scrypt), so call them from threads. The stores may share one SQLite file, `<data dir>/auth.sqlite3` (`DB_NAME`).

    roles            admin > user > guest
    passwords        scrypt hashes (hash, verify, a dummy verify for unknown accounts)
    users            UserStore: accounts with a password and a role           raises UserExists, ValueError, KeyError
    api_keys         KeyStore: `sdr_<id>_<secret>` keys, stored as SHA-256    raises ValueError, KeyError
    tokens           TokenIssuer (HS256 access + rotating refresh tokens),
                     ExternalVerifier (an identity provider's RS256/ES256)    raises InvalidToken
    throttle         LoginThrottle: growing delays after failed logins
    system_accounts  Linux accounts through PAM, roles from groups
    database         the SQLite connection the stores share the habits of
"""

from __future__ import annotations

DB_NAME = "auth.sqlite3"
