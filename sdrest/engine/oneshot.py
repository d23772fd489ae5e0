"""Run one function (a conversion, the build report) in a throw-away child process.

Some model files abort whatever process reads them, so even a one-off binding call never runs in the caller's process.
The child reports progress and log lines over a pipe; a child that dies is reported with its signal and last log lines.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from sdrest.engine import messages as m
from sdrest.engine.errors import Cancelled, EngineCrashed, TaskFailed
from sdrest.engine.process import spawn, stop

ProgressFn = Callable[[int, int], None]
ENTRY = "sdrest.engine.oneshot:child_main"


def child_main(conn: Connection) -> None:
    """The child's side: receive a `Call`, run it, answer `Result` or `Failed`."""
    call = m.receive_in_child(conn)
    assert isinstance(call, m.Call)
    module, _, name = call.function.partition(":")
    function = getattr(importlib.import_module(module), name)
    native = sys.modules.get("sdrest.engine.native")
    if native is not None:  # the function uses the binding: forward what sd.cpp logs and reports
        native.set_log_sink(lambda level, line: m.send(conn, m.Log(level, line)))
        native.set_progress_sink(lambda step, steps, speed: m.send(conn, m.Progress(step, steps, speed)))
    try:
        result = function(*call.args)
    except Exception as e:  # reported to the caller, who decides what it means
        m.send(conn, m.Failed(type(e).__name__, str(e)))
    else:
        m.send(conn, m.Result(result))
    conn.close()


def run(function: str, *args: Any, progress: ProgressFn | None = None, cancel: threading.Event | None = None) -> Any:
    """Call `function` ("module:function") with `args` in a child process and return its result. Raises TaskFailed
    when it raises, EngineCrashed when the child dies, Cancelled when `cancel` is set (the child is stopped)."""
    process, conn = spawn(ENTRY)
    tail: list[str] = []
    try:
        m.send(conn, m.Call(function, list(args)))
        while True:
            if cancel is not None:
                while not conn.poll(0.2):
                    if cancel.is_set():
                        raise Cancelled()
            try:
                message = m.receive_from_child(conn)
            except (EOFError, OSError):
                process.wait()
                raise EngineCrashed(process.returncode, tail[-10:]) from None
            match message:
                case m.Log(line=line):
                    tail.append(line)
                    del tail[:-50]
                case m.Progress(step=step, steps=steps) if progress is not None:
                    progress(step, steps)
                case m.Failed(message=text):
                    raise TaskFailed(text)
                case m.Result(value=value):
                    return value
    finally:
        conn.close()
        stop(process, grace=5.0)  # normally already gone: it exits once it has answered
