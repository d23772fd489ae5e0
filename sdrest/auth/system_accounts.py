"""Logins with the machine's own accounts: the password checked by PAM, the role taken from Linux groups.

(Named so as not to shadow python-pam's `pam` module.) PAM's pam_unix checks passwords against /etc/shadow, which
only root and the `shadow` group may read; anyone else gets pam_unix's helper, which checks only the calling user's
own password. `shadow_problem()` says what to change when that is the case.
"""

from __future__ import annotations

import grp
import os
import pwd

SHADOW = "/etc/shadow"


def authenticate(username: str, password: str, service: str = "sdrest") -> bool:
    """Whether PAM service `service` accepts this password for this account (and the account is usable: not
    expired, not locked). Blocking: PAM may pause a few seconds after a failure. Without /etc/pam.d/<service>, PAM
    uses /etc/pam.d/other."""
    import pam  # python-pam loads libpam through ctypes; only logins through PAM pay for that

    if not username or not password or "\0" in username or "\0" in password:
        return False  # an empty password would pass pam_unix's `nullok` for an account without one
    # A fresh authenticator per call: one instance must not be used from two threads at once.
    return bool(pam.pam().authenticate(username, password, service=service, resetcreds=False))


def groups_of(username: str) -> set[str]:
    """The names of the account's groups, primary and supplementary; empty for an unknown account."""
    try:
        account = pwd.getpwnam(username)
    except KeyError:
        return set()
    names = set()
    for gid in os.getgrouplist(username, account.pw_gid):
        try:
            names.add(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue  # a gid without a group entry names nothing
    return names


def role_for(username: str, allowed_groups: list[str], admin_groups: list[str]) -> str | None:
    """ "admin" for a member of an admin group; "user" for a member of an allowed group, or for any account when
    `allowed_groups` is empty; None (no login) otherwise, or for an unknown account."""
    try:
        pwd.getpwnam(username)
    except KeyError:
        return None
    groups = groups_of(username)
    if groups & set(admin_groups):
        return "admin"
    if not allowed_groups or groups & set(allowed_groups):
        return "user"
    return None


def shadow_problem() -> str | None:
    """Why PAM cannot check other users' passwords from this process, and what to change; None when it can."""
    if os.geteuid() == 0 or not os.path.exists(SHADOW) or os.access(SHADOW, os.R_OK):
        return None
    try:
        user = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        user = str(os.geteuid())
    return (
        f"sdrest runs as {user!r}, which cannot read {SHADOW}, so PAM's pam_unix falls back to its helper "
        f"unix_chkpwd, which checks only the calling user's own password: every other account's login will fail. "
        f"Add {user!r} to the shadow group (`sudo usermod -aG shadow {user}`) and restart sdrest, or run the PAM "
        f"check as root."
    )
