"""Helpers for the web UI's browser tests: a header-only model library, a fake engine that also sends live previews,
a real server on 127.0.0.1, and a record of the console errors and failed requests a page produced."""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from sdrest.app import create_app
from sdrest.engine import messages as m
from sdrest.engine.protocol import EventFn
from sdrest.settings import load_settings
from sdrest.specs import JobSpec
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.live_server import live_server

WEBUI = Path(__file__).resolve().parent.parent / "webui_static"


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser downloads are not used)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def jpeg(width: int, height: int, shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (shade, 90, 200 - shade // 2)).save(buffer, format="JPEG", quality=70)
    return buffer.getvalue()


def png(width: int, height: int, colour: tuple[int, int, int] = (40, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def picture(width: int, height: int, index: int) -> m.RawImage:
    """A soft two-colour gradient (what the fake engine "generates"), so screenshots show something like a picture."""
    across = Image.linear_gradient("L").rotate(90).resize((width, height))
    down = Image.linear_gradient("L").resize((width, height))
    blue = Image.new("L", (width, height), (120 + index * 50) % 256)
    return m.RawImage(width, height, "RGB", Image.merge("RGB", (across, down, blue)).tobytes())


class PreviewingEngine(FakeEngine):
    """The fake engine, plus a live preview (`PreviewImage`) after each step of a job that asked for previews, as the
    real worker sends them, and gradients instead of flat images."""

    def run(self, job_id: str, spec: JobSpec, on_event: EventFn) -> m.Done:
        def relay(event: Any) -> None:
            on_event(event)
            if isinstance(event, m.Progress) and getattr(spec, "preview", None) is not None:
                on_event(m.PreviewImage(event.step, jpeg(32, 32, min(255, event.step * 40))))

        done = super().run(job_id, spec, relay)
        return m.Done([picture(i.width, i.height, n) for n, i in enumerate(done.images)], done.timings)


def make_library(root: Path) -> Library:
    """Flux (with its VAE and CLIP-L), an SD 1.x model, a LoRA, a ControlNet and an upscaler: header-only files."""
    library = Library(root)
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.add("controlnet-sd1", "controlnet/canny-sd15.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/x4.safetensors")
    return library


@contextmanager
def ui_server(library: Library, data_dir: Path, engine: FakeEngine, **settings: Any) -> Iterator[str]:
    """The app with `engine` on a real uvicorn; yields the base URL."""
    config = load_settings({"models_dir": library.root, "data_dir": data_dir, **settings}, env={})
    with live_server(create_app(config, engine=engine)) as url:
        yield url


class Problems:
    """Console errors, failed requests and HTTP errors of one page, less the ones a test expects (`allow`)."""

    def __init__(self, page: Any) -> None:
        self.seen: list[str] = []
        self.allowed: list[re.Pattern[str]] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.seen.append(f"page error: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def allow(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text} ({message.location.get('url', '')})")

    def _failed(self, request: Any) -> None:
        failure = request.failure or ""
        # Closing an event stream (the job ended) or leaving a page aborts its requests: that is not a failure.
        # A newer estimate supersedes (aborts) the one in flight.
        superseded = any(part in request.url for part in ("/events", "/estimate"))
        if "ERR_ABORTED" in failure and (superseded or request.resource_type in ("image", "media")):
            return
        self.seen.append(f"request failed: {request.method} {request.url} {failure}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.seen.append(f"HTTP {response.status}: {response.request.method} {response.url}")

    def unexpected(self) -> list[str]:
        return [s for s in self.seen if not any(p.search(s) for p in self.allowed)]

    def check(self) -> None:
        problems = self.unexpected()
        assert problems == [], "\n".join(problems)


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)
