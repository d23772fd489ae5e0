"""A stand-in for the generation engine, for fast tests of queue and API semantics (no native library)."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

from PIL import Image

from sdrest.engine.supervisor import Cancelled, EngineCrashed, EventFn, GenerationFailed


class FakeEngine:
    """Behaves like `Supervisor`: prompts steer it — "crash" dies, "crash-load" dies loading, "fail" fails cleanly,
    "slow" takes `slow_seconds` per step. Each step emits a progress event; outputs are small real PNGs."""

    def __init__(self, step_seconds: float = 0.0, slow_seconds: float = 0.5) -> None:
        self.step_seconds = step_seconds
        self.slow_seconds = slow_seconds
        self.state = "stopped"
        self.loaded: dict[str, str] | None = None
        self.last_used = time.monotonic()
        self.ran: list[str] = []
        self.stops = 0
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.started = threading.Event()

    def run(self, job_id: str, task: dict[str, Any], on_event: EventFn) -> tuple[list[tuple[bytes, int, int]], dict]:
        self.ran.append(job_id)
        self.started.set()
        prompt = task["params"]["prompt"]
        if self.loaded != task["args"]:
            on_event(("loading",))
            if "crash-load" in prompt:
                raise EngineCrashed(-11, ["model.cpp:1 - loading"], while_loading=True)
            self.loaded = task["args"]
            on_event(("loaded", 0.01))
        self.state = "generating"
        steps = task["params"]["sample_steps"]
        delay = self.slow_seconds if "slow" in prompt else self.step_seconds
        for _image in range(task["params"]["batch_count"]):
            for step in range(1, steps + 1):
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._check_cancel(job_id)
                    time.sleep(0.005)
                self._check_cancel(job_id)
                on_event(("progress", step, steps, max(delay, 0.001)))
        if "crash" in prompt:
            self.state, self.loaded = "stopped", None
            raise EngineCrashed(-6, ["ggml.c:1 - GGML_ASSERT"], while_loading=False)
        if "fail" in prompt:
            raise GenerationFailed("generation_failed", "sd.cpp said no")
        self.state = "idle"
        self.last_used = time.monotonic()
        width, height = task["params"]["width"], task["params"]["height"]
        outputs = []
        for i in range(task["params"]["batch_count"]):
            buffer = io.BytesIO()
            Image.new("RGB", (width, height), (i * 40 % 256, 0, 0)).save(buffer, format="PNG")
            outputs.append((buffer.getvalue(), width, height))
        return outputs, {"load": 0.0, "generate": steps * delay}

    def _check_cancel(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._cancelled:
                self.state, self.loaded = "stopped", None
                raise Cancelled()

    def cancel(self, job_id: str) -> bool:
        with self._lock:
            self._cancelled.add(job_id)
        return True

    def stop(self) -> None:
        self.stops += 1
        self.state, self.loaded = "stopped", None

    def start(self) -> dict[str, Any]:
        return {}

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "pid": None, "loaded": self.loaded, "last_error": None}
