"""Running under systemd: readiness, status and watchdog pings (sd_notify's protocol on `NOTIFY_SOCKET`, spoken
directly: one datagram per message), and log lines with journal priorities when stderr goes to the journal."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

import uvicorn

log = logging.getLogger("sdrest")
# syslog priorities the journal reads from a "<N>" prefix.
_PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def notify(*fields: str) -> bool:
    """Send `READY=1`, `STATUS=…`, `WATCHDOG=1`, `RELOADING=1`, `STOPPING=1` to systemd; False when not under it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
        except OSError as e:
            log.warning("cannot notify systemd at %s: %s", address, e)
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set for this process (WATCHDOG_USEC), or None when there is none."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None


async def keep_alive(status: Callable[[], str], every: float = 5.0) -> None:
    """Ping the watchdog from the event loop (a hung loop stops the pings, and systemd restarts the service) and
    keep STATUS= current."""
    interval = watchdog_interval()
    period = min(every, interval) if interval else every
    while True:
        fields = [f"STATUS={status()}"]
        if interval:
            fields.append("WATCHDOG=1")
        notify(*fields)
        await asyncio.sleep(period)


class JournalFormatter(logging.Formatter):
    """`<N>name: message`: the journal stores the priority and adds its own timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        text = super().format(record)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines() or [""])


def configure_logging(level: str) -> None:
    """Plain lines with journal priorities under systemd (JOURNAL_STREAM is set), timestamped lines elsewhere."""
    handler = logging.StreamHandler()
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class ReadyServer(uvicorn.Server):
    """uvicorn's server, telling systemd READY=1 once the app has started (the library is scanned) and the socket
    is bound, and STOPPING=1 when it shuts down."""

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            notify("READY=1", f"STATUS=serving on {self.config.host}:{self.config.port}")

    async def shutdown(self, sockets: Any = None) -> None:
        notify("STOPPING=1")
        await super().shutdown(sockets)
