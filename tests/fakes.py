"""A stand-in for the generation engine, for fast tests of queue and API semantics. It implements
`sdrest.engine.protocol.Engine` and starts nothing real: no process, no binding."""

from __future__ import annotations

import threading
import time
from typing import Any

from sdrest.engine import messages as m
from sdrest.engine.errors import Cancelled, EngineCrashed, GenerationFailed
from sdrest.engine.protocol import EventFn
from sdrest.specs import JobSpec, Load


class FakeEngine:
    """Prompts steer it — "crash" dies, "crash-load" dies loading, "fail" fails cleanly, "slow" takes `slow_seconds`
    per step. Each step emits a progress event; outputs are raw RGB images of the asked size."""

    def __init__(self, step_seconds: float = 0.0, slow_seconds: float = 0.5) -> None:
        self.step_seconds = step_seconds
        self.slow_seconds = slow_seconds
        self.state = "stopped"
        self.loaded: dict[str, str] | None = None
        self.last_used = time.monotonic()
        self.ran: list[str] = []
        self.specs: list[JobSpec] = []
        self.stops = 0
        self.probes = 0
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self.started = threading.Event()

    def probe(self) -> dict[str, Any]:
        self.probes += 1
        return {"binding": "fake", "sd_cpp": "fake", "backend": "CPU", "backends": ["CPU"], "tinyblas": False}

    def run(self, job_id: str, spec: JobSpec, on_event: EventFn) -> m.Done:
        self.ran.append(job_id)
        self.specs.append(spec)
        self.started.set()
        prompt = getattr(spec, "prompt", "")
        batch = getattr(spec, "batch_count", 1)
        width, height = getattr(spec, "width", 16), getattr(spec, "height", 16)
        if self.loaded != spec.model.plan:
            on_event(m.Loading())
            if "crash-load" in prompt:
                raise EngineCrashed(-11, ["model.cpp:1 - loading"], while_loading=True)
            self.loaded = spec.model.plan
            on_event(m.Loaded(0.01))
        if isinstance(spec, Load):
            self.state, self.last_used = "idle", time.monotonic()
            return m.Done([], {"load": 0.01})
        self.state = "generating"
        steps = getattr(spec, "steps", 1)
        delay = self.slow_seconds if "slow" in prompt else self.step_seconds
        for _image in range(batch):
            for step in range(1, steps + 1):
                deadline = time.monotonic() + delay
                while time.monotonic() < deadline:
                    self._check_cancel(job_id)
                    time.sleep(0.005)
                self._check_cancel(job_id)
                on_event(m.Progress(step, steps, max(delay, 0.001)))
        if "crash" in prompt:
            self.state, self.loaded = "stopped", None
            raise EngineCrashed(-6, ["ggml.c:1 - GGML_ASSERT"], while_loading=False)
        if "fail" in prompt:
            raise GenerationFailed("generation_failed", "sd.cpp said no")
        self.state = "idle"
        self.last_used = time.monotonic()
        pictures = [
            m.RawImage(width, height, "RGB", bytes([i * 40 % 256, 0, 0]) * (width * height)) for i in range(batch)
        ]
        return m.Done(pictures, {"load": 0.0, "generate": steps * delay})

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

    def close(self) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "pid": None, "loaded": self.loaded, "last_error": None}


def make_spec(**fields: Any) -> JobSpec:
    """A txt2img spec with every field filled, for store and queue tests that need no library."""
    from sdrest.specs import ModelUse, Txt2Img

    values: dict[str, Any] = {
        "model": ModelUse("m.safetensors", "sd1", {"model_path": "/nowhere/m.safetensors"}, "/nowhere/m.safetensors"),
        "prompt": "a cat",
        "clean_prompt": "a cat",
        "width": 64,
        "height": 64,
        "steps": 2,
        "cfg_scale": 7.0,
        "guidance": 3.5,
        "sampling_method": "euler_a",
        "seed": 1,
    }
    return Txt2Img(**{**values, **fields})
