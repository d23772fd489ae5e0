"""The one module that imports `stable_diffusion_cpp`; it only ever runs inside a child process.

The binding's failures are process-wide (aborts, NULL contexts that segfault later) and its callbacks and verbosity
are process-global, so whoever imports this module must be a process the server can lose. The helpers here turn the
binding's quirks (see the fixture-layouts README) into plain Python behaviour: log lines go to a sink, progress goes to
a sink, failures raise `NativeError` with the lines sd.cpp logged.
"""

from __future__ import annotations

import collections
import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

import stable_diffusion_cpp as sd_cpp
from stable_diffusion_cpp import stable_diffusion_cpp as _low
from stable_diffusion_cpp.stable_diffusion import GGML_TYPE_MAP
from stable_diffusion_cpp.stable_diffusion import PREVIEW_MAP as _PREVIEW_MODES

LEVELS = {0: "debug", 1: "info", 2: "warning", 3: "error"}


class NativeError(RuntimeError):
    """sd.cpp reported a failure; the message carries the error lines it logged."""


_recent: collections.deque[tuple[str, str]] = collections.deque(maxlen=50)
_log_sink: Callable[[str, str], None] | None = None
_progress_sink: Callable[[int, int, float], None] | None = None


@_low.sd_log_callback
def _on_log(level: int, text: bytes, data: Any) -> None:
    line = text.decode("utf-8", "replace").rstrip()
    if not line:
        return
    name = LEVELS.get(level, "info")
    _recent.append((name, line))
    if _log_sink is not None:
        _log_sink(name, line)


@_low.sd_progress_callback
def _on_progress(step: int, steps: int, seconds_per_step: float, data: Any) -> None:
    if _progress_sink is not None:
        _progress_sink(step, steps, seconds_per_step)


# Installed at import, replacing the wrapper's own callback (which prints to stderr and inverts the levels). The
# callback objects live at module level so ctypes never frees them while sd.cpp holds the pointers.
_low.sd_set_log_callback(_on_log, ctypes.c_void_p(0))
_low.sd_set_progress_callback(_on_progress, ctypes.c_void_p(0))


def set_log_sink(sink: Callable[[str, str], None] | None) -> None:
    """Send every sd.cpp log line to `sink(level, text)`."""
    global _log_sink
    _log_sink = sink


def set_progress_sink(sink: Callable[[int, int, float], None] | None) -> None:
    """Send sd.cpp's progress (step, steps, seconds per step) to `sink`."""
    global _progress_sink
    _progress_sink = sink


def recent_log(errors_only: bool = False) -> list[str]:
    """The last lines sd.cpp logged (`file.cpp:line - message`), or only its errors."""
    return [line for level, line in _recent if not errors_only or level == "error"]


def backend_info() -> dict[str, Any]:
    """What this build of the binding is: versions, ggml backends compiled in, CPU features."""
    lib = _low._lib
    backends: list[str] = []
    if hasattr(lib, "ggml_backend_reg_count"):
        lib.ggml_backend_reg_count.restype = ctypes.c_size_t
        lib.ggml_backend_reg_get.restype = ctypes.c_void_p
        lib.ggml_backend_reg_get.argtypes = [ctypes.c_size_t]
        lib.ggml_backend_reg_name.restype = ctypes.c_char_p
        lib.ggml_backend_reg_name.argtypes = [ctypes.c_void_p]
        for i in range(lib.ggml_backend_reg_count()):
            backends.append(lib.ggml_backend_reg_name(lib.ggml_backend_reg_get(i)).decode())
    llamafile = bool(lib.ggml_cpu_has_llamafile()) if hasattr(lib, "ggml_cpu_has_llamafile") else False
    system = _low.sd_get_system_info().decode("utf-8", "replace")
    features = [part.split("=")[0].strip() for part in system.split("|") if part.strip().endswith("= 1")]
    accelerators = [b for b in backends if b.upper() != "CPU"]
    devices: list[dict[str, Any]] = []
    if hasattr(lib, "ggml_backend_dev_count"):
        lib.ggml_backend_dev_count.restype = ctypes.c_size_t
        lib.ggml_backend_dev_get.restype = ctypes.c_void_p
        lib.ggml_backend_dev_get.argtypes = [ctypes.c_size_t]
        for name in ("ggml_backend_dev_name", "ggml_backend_dev_description"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        lib.ggml_backend_dev_memory.argtypes = [
            ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)
        ]  # fmt: skip
        for i in range(lib.ggml_backend_dev_count()):
            dev = lib.ggml_backend_dev_get(i)
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            devices.append({
                "name": lib.ggml_backend_dev_name(dev).decode(),
                "description": lib.ggml_backend_dev_description(dev).decode(),
                "memory_free": free.value, "memory_total": total.value,
            })  # fmt: skip
    return {
        "binding": sd_cpp.__version__,
        "sd_cpp": _low.sd_version().decode(),
        "sd_cpp_commit": _low.sd_commit().decode(),
        "backends": backends,
        "backend": accelerators[0] if accelerators else "CPU",
        "devices": devices,
        "tinyblas": llamafile,
        "cpu_features": [f.removeprefix("System Info:").strip() for f in features],
        "physical_cores": int(_low.sd_get_num_physical_cores()),
    }


def convert(source: str, output: str, output_type: str) -> None:
    """Convert `source` to GGUF (or safetensors, by `output`'s suffix) with tensors of `output_type`."""
    if output_type not in GGML_TYPE_MAP:
        raise NativeError(f"the binding has no type {output_type!r}")
    _recent.clear()
    ok = _low.convert(source.encode(), b"", output.encode(), int(GGML_TYPE_MAP[output_type]), b"", True)
    if not ok:
        raise NativeError("; ".join(recent_log(errors_only=True)) or "sd.cpp could not convert the file")


# -- models and generation --------------------------------------------------------------------------------------------

PreviewFn = Callable[[int, list[Any], bool], None]
_preview_sink: PreviewFn | None = None
_preview_owner: Any = None


@_low.sd_preview_callback
def _on_preview(step: int, frame_count: int, frames: Any, is_noisy: bool, data: Any) -> None:
    if _preview_sink is not None and _preview_owner is not None:
        _preview_sink(step, _preview_owner._sd_image_t_p_to_images(frames, frame_count, 1), bool(is_noisy))


class _HiresParams(_low.sd_hires_params_t):
    """0.4.7's wrapper builds its hires struct with `path`, `width` and `height`, which are not the struct's fields
    (`model_path`, `target_width`, `target_height`): ctypes drops such keywords silently, so an upscaler model for
    hires fix was never used ("hires model upscaler requires a model path, disabling hires"). This maps them."""

    def __init__(self, *, path: bytes = b"", width: int = 0, height: int = 0, **fields: Any) -> None:
        super().__init__(model_path=path, target_width=width, target_height=height, **fields)


# The wrapper looks the struct up on the package (which re-exports the low-level module) at call time; only this
# (worker) process is affected.
sd_cpp.sd_hires_params_t = _HiresParams


class _Binding(sd_cpp.StableDiffusion):
    """The wrapper with its 0.4.7 embeddings bug worked around: it builds the list of embedding items in a local
    variable but reads `self._embedding_items`, so any `embedding_paths` raised AttributeError. The same items,
    built the same way (name = file stem), are offered under the name it reads."""

    @property
    def _embedding_items(self) -> list[Any]:
        items = self.__dict__.get("_sdrest_embedding_items")
        if items is None:
            items = [
                _low.sd_embedding_t(name=Path(p).stem.encode("utf-8"), path=str(Path(p)).encode("utf-8"))
                for p in self.embedding_paths
            ]
            self.__dict__["_sdrest_embedding_items"] = items  # kept alive: sd.cpp reads the C strings
        return items


class Model:
    """A loaded sd.cpp context (a diffusion model, an upscaler, or both). Construction raises `NativeError` instead of
    leaving the NULL context the binding returns on a failed load (which would segfault on first use or on free)."""

    def __init__(self, args: dict[str, str], **options: Any) -> None:
        _recent.clear()
        # The wrapper's default is half the logical CPUs; sd.cpp runs fastest on all physical cores.
        options.setdefault("n_threads", int(_low.sd_get_num_physical_cores()))
        self.sd = _Binding(**args, **options, verbose=False)
        wants_model = bool(args.get("model_path") or args.get("diffusion_model_path"))
        if wants_model and not self.sd._model.model:
            self.sd._model.model = None  # the wrapper would pass the NULL pointer to free_sd_ctx
            detail = "; ".join(recent_log(errors_only=True)) or "no error was logged"
            raise NativeError(f"sd.cpp could not load the model: {detail}")
        if args.get("upscaler_path") and not self.sd._upscaler.upscaler:
            self.sd._upscaler.upscaler = None
            detail = "; ".join(recent_log(errors_only=True)) or "no error was logged"
            raise NativeError(f"sd.cpp could not load the upscaler: {detail}")

    def upscale(self, image: Any, factor: float, model_scale: int) -> Any:
        """`image` upscaled by exactly `factor`: the upscaler runs as often as needed, then a Lanczos resize (as
        AUTOMATIC1111 does when the factor is not the model's own scale)."""
        from PIL import Image

        from sdrest.engine.calls import upscale_passes

        target = (round(image.width * factor), round(image.height * factor))
        for _ in range(upscale_passes(model_scale, factor)):
            image = self.sd.upscale(image.convert("RGB"), upscale_factor=model_scale)[0]
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
        return image

    def generate(
        self,
        params: dict[str, Any],
        preview: PreviewFn | None = None,
        preview_method: str = "proj",
        preview_interval: int = 1,
        video: bool = False,
    ) -> list[Any]:
        """Images (PIL, RGBA) for `params` (generate_image's keywords). The wrapper's own callback arguments are never
        used: it keeps their C pointers only for the length of one call, and sd.cpp calls them again later."""
        global _preview_sink, _preview_owner
        params = {"eta": float("inf"), **params}  # sd.cpp's automatic eta, as sd-cli and sd-server use
        if preview is not None:
            _preview_sink, _preview_owner = preview, self.sd
            mode = int(_PREVIEW_MODES[preview_method])
            _low.sd_set_preview_callback(_on_preview, mode, preview_interval, True, False, ctypes.c_void_p(0))
        try:
            if video:
                return list(self.sd.generate_video(**params))
            return list(self.sd.generate_image(**params))
        finally:
            if preview is not None:
                _low.sd_set_preview_callback(
                    _on_preview, int(_PREVIEW_MODES["none"]), 1, True, False, ctypes.c_void_p(0)
                )
                _preview_sink = _preview_owner = None

    def close(self) -> None:
        self.sd.close()


def test_load(args: dict[str, str]) -> bool:
    """Load a plan and free it again (`POST /models/{id}/validate` with `load`); raises NativeError if it fails."""
    Model(args).close()
    return True
