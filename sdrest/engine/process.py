"""Start a child Python process that talks back over a `multiprocessing` connection.

Children are started with `python -m sdrest.engine.process <fd> <role>` rather than multiprocessing's spawn, so they
never re-import the caller's `__main__` (a script without a main guard would otherwise run again in the child) and
inherit nothing but the connection's file descriptor.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from multiprocessing.connection import Connection


def spawn(role: str) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start a child running `role` ("oneshot" or "worker"); returns the process and the parent's end of the pipe."""
    parent, child = multiprocessing.Pipe(duplex=True)
    fd = child.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "sdrest.engine.process", str(fd), role],
        pass_fds=[fd],
        stdin=subprocess.DEVNULL,
        # The child's own stdout/stderr are the server's: sd.cpp may print there if it bypasses the log callback.
        start_new_session=True,  # a terminal's Ctrl-C reaches the server, which then stops its children itself
    )
    child.close()
    return process, parent


def _main() -> None:
    fd, role = int(sys.argv[1]), sys.argv[2]
    conn = Connection(fd)
    os.set_inheritable(fd, False)
    if role == "oneshot":
        from sdrest.engine.oneshot import child_main

        child_main(conn)
    else:
        raise SystemExit(f"unknown child role {role!r}")


if __name__ == "__main__":
    _main()
