"""The generation worker: a child process that keeps one model loaded and runs the jobs the server sends it.

Its lifecycle, as the supervisor (`engine.supervisor`) sees it:

    (spawn) ──▶ starting ──ready──▶ idle ──generate──▶ loading ──loaded──▶ generating ──done/failed──▶ idle
                   │                 ▲                    │                    │
                   ╰──── exits ──────┴── stopped ◀── kill (cancel, idle unload, crash: EOF on the pipe) ◀╯

It keeps the loaded context while consecutive jobs share a loading plan and reloads when the plan changes. Every
message it sends is a tuple whose first item names it; see `run()` for the list.
"""

from __future__ import annotations

import io
import time
from multiprocessing.connection import Connection
from typing import Any

from sdrest import images

PREVIEW_SIDE = 256


class Worker:
    def __init__(self, conn: Connection) -> None:
        from sdrest.engine import native

        self.native = native
        self.conn = conn
        self.model: Any = None
        self.key: Any = None
        native.set_log_sink(lambda level, line: conn.send(("log", level, line)))
        native.set_progress_sink(lambda step, steps, speed: conn.send(("progress", step, steps, speed)))

    def run(self) -> None:
        """Serve until the pipe closes. Sends: ready(info), log(level, line), loading(), loaded(seconds),
        progress(step, steps, s/it), preview(step, png), done(outputs, timings), failed(code, message)."""
        self.conn.send(("ready", self.native.backend_info()))
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return
            if message[0] == "generate":
                self.generate(message[1])
            elif message[0] == "unload":
                self.unload()

    def unload(self) -> None:
        if self.model is not None:
            self.model.close()
        self.model = self.key = None

    def ensure_model(self, args: dict[str, str], options: dict[str, Any]) -> float:
        key = (sorted(args.items()), sorted(options.items()))
        if key == self.key:
            return 0.0
        self.unload()
        self.conn.send(("loading",))
        start = time.perf_counter()
        self.model = self.native.Model(args, **options)
        self.key = key
        seconds = time.perf_counter() - start
        self.conn.send(("loaded", seconds))
        return seconds

    def generate(self, task: dict[str, Any]) -> None:
        try:
            load_seconds = self.ensure_model(task["args"], task["options"])
        except self.native.NativeError as e:
            self.conn.send(("failed", "model_load_failed", str(e)))
            return
        preview = task.get("preview")
        start = time.perf_counter()
        try:
            pictures = self.model.generate(
                task["params"],
                preview=self._send_preview if preview else None,
                preview_method=preview["method"] if preview else "proj",
                preview_interval=preview["interval"] if preview else 1,
            )
        except (ValueError, RuntimeError) as e:  # the wrapper's own argument checks
            self.conn.send(("failed", "generation_failed", str(e)))
            return
        generate_seconds = time.perf_counter() - start
        encode = task["encode"]
        outputs = []
        for picture, infotext in zip(pictures, encode["infotexts"], strict=False):
            data = images.encode_image(picture, encode["format"], infotext, quality=encode.get("quality", 95))
            outputs.append((data, picture.width, picture.height))
        timings = {"load": load_seconds, "generate": generate_seconds}
        self.conn.send(("done", outputs, timings))

    def _send_preview(self, step: int, frames: list[Any], is_noisy: bool) -> None:
        if not frames:
            return
        frame = frames[0].convert("RGB")
        frame.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=80)
        self.conn.send(("preview", step, buffer.getvalue()))


def child_main(conn: Connection) -> None:
    Worker(conn).run()
