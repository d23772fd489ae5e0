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
from sdrest.engine.calls import generate_image_kwargs, generate_video_kwargs, load_options
from sdrest.specs import EngineSpec, Img2Img, Load, Txt2Img, Upscale, Video

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
        key = (sorted(plan.items()), sorted((k, repr(v)) for k, v in options.items()))
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
            load_seconds = self.ensure_model(spec.model.plan, {**job.options, **load_options(spec)})
        except self.native.NativeError as e:
            return m.Failed("model_load_failed", str(e))
        start = time.perf_counter()
        try:
            pictures = self._run(spec)
        except (ValueError, RuntimeError, OSError) as e:  # the wrapper's own argument checks, unreadable inputs
            return m.Failed("generation_failed", str(e))
        seconds = time.perf_counter() - start
        raw = [m.RawImage(p.width, p.height, p.mode, p.tobytes()) for p in pictures]
        return m.Done(raw, {"load": load_seconds, "generate": seconds})

    def _run(self, spec: EngineSpec) -> list[Any]:
        if isinstance(spec, Load):
            return []  # loading was all it asked for
        if isinstance(spec, Upscale):
            from PIL import Image

            with Image.open(spec.image) as image:
                return [self.model.upscale(image, spec.factor, spec.model_scale)]
        preview = spec.preview if isinstance(spec, Txt2Img) else None
        common: dict[str, Any] = {
            "preview": self._send_preview if preview else None,
            "preview_method": preview.method if preview else "proj",
            "preview_interval": preview.interval if preview else 1,
        }
        if isinstance(spec, Video):
            return self.model.generate(generate_video_kwargs(spec), video=True, **common)
        pictures = self.model.generate(generate_image_kwargs(spec), **common)
        if isinstance(spec, Img2Img) and spec.mask is not None:
            pictures = [_overlay(p, spec.init_image, spec.mask) for p in pictures]
        if isinstance(spec, Txt2Img) and spec.upscale is not None:
            pictures = [self.model.upscale(p, spec.upscale.factor, spec.upscale.model_scale) for p in pictures]
        return pictures

    def _send_preview(self, step: int, frames: list[Any], is_noisy: bool) -> None:
        if not frames:
            return
        frame = frames[0].convert("RGB")
        frame.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
        buffer = io.BytesIO()
        frame.save(buffer, format="JPEG", quality=80)
        m.send(self.conn, m.PreviewImage(step, buffer.getvalue()))


def _overlay(picture: Any, init_path: str, mask_path: str) -> Any:
    """Inpainting keeps the input outside the mask, as AUTOMATIC1111 does: the generated pixels are pasted over the
    original through the (blurred) mask, so unmasked areas do not go through the VAE at all."""
    from PIL import Image

    with Image.open(init_path) as init, Image.open(mask_path) as mask:
        size = picture.size
        original = init.convert("RGB").resize(size)
        return Image.composite(picture.convert("RGB"), original, mask.convert("L").resize(size))


def child_main(conn: Connection) -> None:
    """The worker's entry point (`sdrest.engine.worker:child_main`)."""
    Worker(conn).run()
