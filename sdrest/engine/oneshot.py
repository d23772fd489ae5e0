"""Run one binding call (a conversion, the build report) in a throw-away child process.

Some model files abort whatever process reads them, so even a one-off call never runs in the caller's process. The
child reports progress and log lines over a pipe; a child that dies is reported with its signal and last log lines.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sdrest.engine.process import spawn, stop

ProgressFn = Callable[[int, int], None]


class EngineCrashed(RuntimeError):
    """The child process died instead of answering (a native abort or segfault)."""

    def __init__(self, exitcode: int | None, log_tail: list[str]) -> None:
        self.exitcode = exitcode
        self.log_tail = log_tail
        super().__init__(f"the native library crashed ({describe_exit(exitcode)})")


class TaskFailed(RuntimeError):
    """The binding reported a failure; the message is sd.cpp's."""


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


def child_main(conn: Connection) -> None:
    """The child's side: receive (task, args), run it, send the result."""
    from sdrest.engine import native

    task, args = conn.recv()

    native.set_log_sink(lambda level, line: conn.send(("log", level, line)))
    native.set_progress_sink(lambda step, steps, _speed: conn.send(("progress", step, steps)))
    try:
        result = getattr(native, task)(*args)
    except native.NativeError as e:
        conn.send(("error", str(e)))
    else:
        conn.send(("ok", result))
    conn.close()


def run(task: str, *args: Any, progress: ProgressFn | None = None) -> Any:
    """Call `sdrest.engine.native.<task>(*args)` in a child process and return its result."""
    process, conn = spawn("oneshot")
    tail: list[str] = []
    try:
        conn.send((task, args))
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                process.wait()
                raise EngineCrashed(process.returncode, tail[-10:]) from None
            kind = message[0]
            if kind == "log":
                tail.append(message[2])
                del tail[:-50]
            elif kind == "progress" and progress is not None:
                progress(message[1], message[2])
            elif kind == "error":
                raise TaskFailed(message[1])
            elif kind == "ok":
                return message[1]
    finally:
        conn.close()
        stop(process, grace=5.0)  # normally already gone: it exits once it has answered
