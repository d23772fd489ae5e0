"""The generation worker: a child process that keeps one model loaded and runs the jobs the server sends it.

Its lifecycle, as the supervisor (`engine.supervisor`) sees it:

    (spawn) ──▶ starting ──Ready──▶ idle ──Generate──▶ loading ──Loaded──▶ generating ──Done/Failed──▶ idle
                   │                 ▲                    │                    │
                   ╰──── exits ──────┴── stopped ◀── kill (cancel, idle unload, crash: EOF on the pipe) ◀╯

It keeps the loaded context while consecutive jobs share a loading plan and options, and reloads when either changes.
The messages are the structs of `engine.messages`.
"""

from __future__ import annotations

import io
import time
from multiprocessing.connection import Connection
from typing import Any

from sdrest.engine import messages as m
from sdrest.engine.calls import generate_image_kwargs

PREVIEW_SIDE = 256


class Worker:
    def __init__(self, conn: Connection) -> None:
        from sdrest.engine import native

        self.native = native
        self.conn = conn
        self.model: Any = None
        self.key: Any = None
        native.set_log_sink(lambda level, line: m.send(conn, m.Log(level, line)))
        native.set_progress_sink(lambda step, steps, speed: m.send(conn, m.Progress(step, steps, speed)))

    def run(self) -> None:
        """Serve until the pipe closes."""
        m.send(self.conn, m.Ready(self.native.backend_info()))
        while True:
            try:
                message = m.receive_in_child(self.conn)
            except (EOFError, OSError):
                return
            if isinstance(message, m.Generate):
                m.send(self.conn, self.generate(message))

    def ensure_model(self, plan: dict[str, str], options: dict[str, Any]) -> float:
        key = (sorted(plan.items()), sorted(options.items()))
        if key == self.key:
            return 0.0
        if self.model is not None:
            self.model.close()
        self.model = self.key = None
        m.send(self.conn, m.Loading())
        start = time.perf_counter()
        self.model = self.native.Model(plan, **options)
        self.key = key
        seconds = time.perf_counter() - start
        m.send(self.conn, m.Loaded(seconds))
        return seconds

    def generate(self, job: m.Generate) -> m.Done | m.Failed:
        spec = job.spec
        try:
            load_seconds = self.ensure_model(spec.model.plan, job.options)
        except self.native.NativeError as e:
            return m.Failed("model_load_failed", str(e))
        preview = spec.preview
        start = time.perf_counter()
        try:
            pictures = self.model.generate(
                generate_image_kwargs(spec),
                preview=self._send_preview if preview else None,
                preview_method=preview.method if preview else "proj",
                preview_interval=preview.interval if preview else 1,
            )
        except (ValueError, RuntimeError) as e:  # the wrapper's own argument checks
            return m.Failed("generation_failed", str(e))
        seconds = time.perf_counter() - start
        raw = [m.RawImage(p.width, p.height, p.mode, p.tobytes()) for p in pictures]
        return m.Done(raw, {"load": load_seconds, "generate": seconds})

    def _send_preview(self, step: int, frames: list[Any], is_noisy: bool) -> None:
        if not frames:
            return
        frame = frames[0].convert("RGB")
        frame.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=80)
        m.send(self.conn, m.PreviewImage(step, buffer.getvalue()))


def child_main(conn: Connection) -> None:
    """The worker's entry point (`sdrest.engine.worker:child_main`)."""
    Worker(conn).run()
