"""Start a child Python process that talks back over a `multiprocessing` connection.

Children are started with `python -m sdrest.engine.process <fd> <role>` rather than multiprocessing's spawn, so they
never re-import the caller's `__main__` (a script without a main guard would otherwise run again in the child) and
inherit nothing but the connection's file descriptor.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
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


def stop(process: subprocess.Popen[bytes], grace: float = 1.0) -> None:
    """End a child: SIGTERM, then SIGKILL if it is still there after `grace` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _main() -> None:
    fd, role = int(sys.argv[1]), sys.argv[2]
    _die_with_parent()
    conn = Connection(fd)
    os.set_inheritable(fd, False)
    if role == "oneshot":
        from sdrest.engine.oneshot import child_main
    elif role == "worker":
        from sdrest.engine.worker import child_main
    else:
        raise SystemExit(f"unknown child role {role!r}")
    child_main(conn)


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the server dies, so a killed server leaves no orphan burning the CPU."""
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


if __name__ == "__main__":
    _main()
