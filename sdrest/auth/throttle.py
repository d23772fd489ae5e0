"""Slows password guessing: after a few failed logins, an account or an address must wait longer each time.

Failures are counted per account and per address over a sliding window. Up to `FREE_FAILURES` (3) cost nothing;
with n ≥ 3 failures in the window the next attempt waits `base_delay · 2^(n-3)` seconds after the last failure, at
most `max_delay`. A success clears the account's failures and the ones its address made against that account (not
those against other accounts, so logging into one's own account does not reset a guessing run against others).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FREE_FAILURES = 3
_REMEMBERED = 64  # failures kept per key: far past the count where the delay reaches its cap

Failures = deque[tuple[float, str]]  # (when, account)


class LoginThrottle:
    """In memory and thread-safe; at most `max_keys` accounts and addresses tracked, the least recently failing
    forgotten first."""

    def __init__(
        self,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        window: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_keys: int = 10_000,
    ) -> None:
        self.base_delay, self.max_delay, self.window = base_delay, max_delay, window
        self.max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: OrderedDict[tuple[str, str], Failures] = OrderedDict()

    def delay(self, account: str, address: str) -> float:
        """Seconds to wait before this attempt may even be checked (0 when it may be checked now)."""
        with self._lock:
            now = self._clock()
            return max(self._wait(("account", _fold(account)), now), self._wait(("address", address), now))

    def failure(self, account: str, address: str) -> None:
        with self._lock:
            now, name = self._clock(), _fold(account)
            for key in (("account", name), ("address", address)):
                failures = self._failures.get(key)
                if failures is None:
                    failures = self._failures[key] = deque(maxlen=_REMEMBERED)
                failures.append((now, name))
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def success(self, account: str, address: str) -> None:
        with self._lock:
            name = _fold(account)
            self._failures.pop(("account", name), None)
            failures = self._failures.get(("address", address))
            if failures is not None:
                kept = [f for f in failures if f[1] != name]
                if kept:
                    self._failures[("address", address)] = deque(kept, maxlen=_REMEMBERED)
                else:
                    del self._failures[("address", address)]

    def _wait(self, key: tuple[str, str], now: float) -> float:
        failures = self._failures.get(key)
        if failures is None:
            return 0.0
        while failures and failures[0][0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return 0.0
        if len(failures) < FREE_FAILURES:
            return 0.0
        step = min(self.max_delay, self.base_delay * 2 ** (len(failures) - FREE_FAILURES))
        return max(0.0, failures[-1][0] + step - now)


def _fold(account: str) -> str:
    # `Alice` and `alice` share a count: changing case must not buy fresh guesses.
    return account.casefold()
