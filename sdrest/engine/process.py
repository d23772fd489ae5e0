"""Start a child Python process by a `"module:function"` entry point, talking back over a `multiprocessing` pipe.

Children are started with `python -m sdrest.engine.process <fd> <module:function>` rather than multiprocessing's
spawn, so they never re-import the caller's `__main__` (a script without a main guard would otherwise run again in the
child) and inherit nothing but the connection's file descriptor. A new child role (converter, hasher, downloader) is a
function taking the connection; nothing here changes for it.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection


def spawn(entry: str) -> tuple[subprocess.Popen[bytes], Connection]:
    """Start a child running `entry` ("package.module:function", called with the child's end of the pipe); returns
    the process and the parent's end."""
    if ":" not in entry:
        raise ValueError(f"a child entry point is 'module:function', not {entry!r}")
    parent, child = multiprocessing.Pipe(duplex=True)
    fd = child.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "sdrest.engine.process", str(fd), entry],
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


def describe_exit(exitcode: int | None) -> str:
    """'SIGSEGV', 'SIGABRT', 'exit code 3' … for a child's exit code."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _main() -> None:
    fd, entry = int(sys.argv[1]), sys.argv[2]
    _die_with_parent()
    conn = Connection(fd)
    os.set_inheritable(fd, False)
    module, _, function = entry.partition(":")
    getattr(importlib.import_module(module), function)(conn)


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
