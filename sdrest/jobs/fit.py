"""Will a job fit in memory? The plan's weights and the compute buffers its size needs, against the free memory of the
device it runs on; the load options that make it fit when it does not as is; and a refusal, with the numbers, when
nothing does.

Weights are the plan's file sizes (a full checkpoint split into diffusion model, text encoders and VAE by its
tensors). Compute buffers follow sd.cpp's own accounting, logged on an NVIDIA H200 for SD 1.x
(bench/results/nvidia-h200.md): the UNet's grows with the square of the pixels (attention over every latent pixel),
the VAE decoder's with the pixels; VAE tiling caps the decoder at its tile, flash attention makes the UNet's linear.
The buffers of the diffusion model and the VAE are never allocated at once, so the peak is the larger of the two; with
the weights offloaded to RAM, each phase uploads only its own weights. For SD 1.x on the H200 this predicts peaks of
4.3 GiB as is, 3.2 tiled, 2.8 offloaded and 2.3 offloaded with flash attention and tiling at 512², where 4.3, 3.2,
2.9 and 2.4 GiB were measured; and 11.5 and 11.2 GiB at 1024² as is and offloaded (measured 11.2 and 10.9).

Options are only chosen where neither the settings, the model's sidecar nor the request set them, and only as far as
needed, cheapest first by the measurements: VAE tiling (same speed), text encoders on the CPU (same speed), flash
attention (faster on a GPU; 1.7x slower on a CPU, so there it comes last), then the weights in RAM, uploaded per use
(1.2x).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdrest.jobs.errors import Invalid
from sdrest.library.headers import HeaderError, read_header
from sdrest.specs import EngineSpec, Txt2Img, Video

MIB = 1024 * 1024
GIB = 1024 * MIB
GPU_CONTEXT = 600 * MIB  # the CUDA context and cuBLAS workspace (530 MiB measured on an H200), rounded up
CPU_CONTEXT = 300 * MIB  # the worker process itself: Python, the binding, ggml's threads
# sd.cpp's compute buffers for SD 1.x, in MB per megapixel of output (H200 log: UNet 560 MB at 512², 8361 at 1024²;
# VAE 1664 and 6656; 416 MB tiled; UNet 128 MB at 512² with flash attention).
UNET_LINEAR, UNET_SQUARE, UNET_FLASH = 200 * MIB, 8161 * MIB, 512 * MIB
VAE_LINEAR, VAE_TILED = 6656 * MIB, 416 * MIB
# Architectures whose diffusion model attends over every latent pixel (SD 1.x/2.x); the rest attend over fewer tokens
# (SDXL skips the first level, the DiTs attend over 2x2 patches), so only their linear part is counted.
FULL_ATTENTION = ("sd1", "sd2")

_TEXT_SLOTS = ("clip_l_path", "clip_g_path", "t5xxl_path", "llm_path", "llm_vision_path", "clip_vision_path")
_VAE_SLOTS = ("vae_path", "taesd_path")
_DIFFUSION_SLOTS = ("model_path", "diffusion_model_path", "high_noise_diffusion_model_path")
_PREFIXES = {
    "vae": ("first_stage_model.", "vae."),
    "text": ("cond_stage_model.", "conditioner.", "text_encoders.", "te.", "text_model."),
}


@dataclass
class Weights:
    """Bytes of weights per part of the model."""

    diffusion: int = 0
    text: int = 0
    vae: int = 0
    other: int = 0  # control net, upscaler, PhotoMaker

    @property
    def total(self) -> int:
        return self.diffusion + self.text + self.vae + self.other


@dataclass
class Resources:
    """What the machine has for a job: the GPU's free memory (None: no GPU) and the RAM the worker may use."""

    ram_available: int
    gpu_name: str | None = None
    gpu_free: int | None = None


@dataclass
class Fit:
    """The memory a job needs where it runs, what is there, and the options chosen to get there."""

    device: str
    need: int
    available: int
    weights: Weights
    compute: int
    chosen: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.need <= self.available


_split_cache: dict[tuple[str, int, int], tuple[float, float]] = {}
_split_lock = threading.Lock()


def _checkpoint_split(path: str) -> tuple[float, float]:
    """The fractions of a checkpoint's elements that are its text encoders and its VAE (cached per file version)."""
    try:
        stat = Path(path).stat()
    except OSError:
        return 0.0, 0.0
    key = (path, stat.st_size, stat.st_mtime_ns)
    with _split_lock:
        if key in _split_cache:
            return _split_cache[key]
    counts = {"text": 0, "vae": 0, "all": 0}
    try:
        tensors = read_header(Path(path)).tensors
    except HeaderError:
        tensors = {}
    for name, tensor in tensors.items():
        elements = 1
        for dim in tensor.shape:
            elements *= dim
        counts["all"] += elements
        for part, prefixes in _PREFIXES.items():
            if name.startswith(prefixes):
                counts[part] += elements
    total = counts["all"] or 1
    split = (counts["text"] / total, counts["vae"] / total)
    with _split_lock:
        _split_cache[key] = split
    return split


def weights(plan: Mapping[str, str]) -> Weights:
    """The plan's weights by part, from its files' sizes. Reads file headers: call it from a thread."""
    found = Weights()
    for slot, path in plan.items():
        try:
            size = Path(path).stat().st_size
        except OSError:
            continue
        if slot == "model_path":
            text, vae = _checkpoint_split(path)
            found.text += int(size * text)
            found.vae += int(size * vae)
            found.diffusion += size - int(size * text) - int(size * vae)
        elif slot in _DIFFUSION_SLOTS:
            found.diffusion += size
        elif slot in _TEXT_SLOTS:
            found.text += size
        elif slot in _VAE_SLOTS:
            found.vae += size
        else:
            found.other += size
    return found


def _megapixels(spec: EngineSpec) -> float:
    if isinstance(spec, Video):
        latent_frames = 1 + (spec.frames - 1) // 4  # Wan's VAE packs four frames into one latent frame
        return spec.width * spec.height * latent_frames / 1e6
    if isinstance(spec, Txt2Img):
        side = (spec.hires.width * spec.hires.height) if spec.hires is not None else spec.width * spec.height
        return side / 1e6
    return 0.0


def compute_bytes(spec: EngineSpec, options: Mapping[str, Any], vae_tiling: bool) -> tuple[int, int]:
    """(diffusion model, VAE decoder) compute buffers for this job with these options."""
    mp = _megapixels(spec)
    if mp == 0:
        return 0, 0
    flash = options.get("flash_attn") or options.get("diffusion_flash_attn")
    family = spec.model.architecture.split("_")[0] if spec.model.architecture else ""
    if flash or family not in FULL_ATTENTION:
        diffusion = (UNET_FLASH if flash else UNET_LINEAR) * mp
    else:
        diffusion = UNET_LINEAR * mp + UNET_SQUARE * mp * mp
    decoder = VAE_TILED if vae_tiling else VAE_LINEAR * mp
    if "taesd_path" in spec.model.plan and not options.get("tae_preview_only"):
        decoder = min(decoder, VAE_TILED)  # the tiny decoder's buffer (480 MB at 512²) barely grows
    return int(diffusion), int(decoder)


def _need(spec: EngineSpec, w: Weights, options: Mapping[str, Any], tiling: bool, gpu: bool) -> tuple[int, int]:
    """(bytes on the device that runs the job, bytes of weights kept in RAM) for these options.

    The model runs in phases — text encoders, diffusion model, VAE decoder — each with its weights and its compute
    buffer. Weights held on the device add up; weights offloaded to RAM are uploaded for their phase only."""
    diffusion, decoder = compute_bytes(spec, options, tiling)
    if not gpu:
        return CPU_CONTEXT + w.total + max(diffusion, decoder), 0
    phases = [(w.diffusion + w.other, diffusion)]
    in_ram = 0
    if options.get("keep_vae_on_cpu"):
        in_ram += w.vae  # and its buffer: the decoder runs on the CPU
    else:
        phases.append((w.vae, decoder))
    if options.get("keep_clip_on_cpu"):
        in_ram += w.text
    else:
        phases.append((w.text, 0))
    if options.get("offload_params_to_cpu"):
        in_ram += sum(weights for weights, _ in phases)
        on_device = max(weights + buffer for weights, buffer in phases)
    else:
        on_device = sum(weights for weights, _ in phases) + max(buffer for _, buffer in phases)
    return GPU_CONTEXT + on_device, in_ram


def fit(spec: EngineSpec, w: Weights, resources: Resources, tiling_asked: bool | None) -> tuple[Fit, bool]:
    """How the job fits, with the options chosen for it (only ones not set already), and whether VAE tiling is on.
    Raises `Invalid` with the numbers when it cannot fit even with every option."""
    options: dict[str, Any] = dict(spec.model.options)
    tiling = bool(getattr(spec, "vae_tiling", False))
    gpu = resources.gpu_free is not None
    chosen: dict[str, Any] = {}
    steps: list[str] = []
    if tiling_asked is None and _megapixels(spec) > 0 and not tiling:
        steps.append("vae_tiling")
    # On a CPU flash attention is 1.7x slower, but it is the only way large images fit (SD 1.x's attention buffer
    # grows with the square of the pixels: 137 GB at 2048²).
    later = ("keep_clip_on_cpu", "flash_attn", "offload_params_to_cpu") if gpu else ("flash_attn",)
    steps += [o for o in later if o not in options and not (o == "flash_attn" and "diffusion_flash_attn" in options)]
    available = resources.gpu_free if gpu else resources.ram_available
    assert available is not None
    need, in_ram = _need(spec, w, options, tiling, gpu)
    for step in steps:
        if need <= available and in_ram <= resources.ram_available:
            break
        if step == "vae_tiling":
            tiling = True
        else:
            options[step] = chosen[step] = True
        need, in_ram = _need(spec, w, options, tiling, gpu)
    if tiling and not getattr(spec, "vae_tiling", False):
        chosen["vae_tiling"] = True
    diffusion, decoder = compute_bytes(spec, options, tiling)
    device = (resources.gpu_name or "GPU") if gpu else "RAM"
    result = Fit(device, need, available, w, max(diffusion, decoder), chosen)
    if need > available:
        tried = f" even with {', '.join(sorted(chosen))}" if chosen else ""
        raise Invalid(
            f"{spec.model.name} needs about {need / GIB:.1f} GiB of {_memory_name(gpu, device)}{tried} "
            f"(weights {w.total / GIB:.1f} GiB, compute {result.compute / GIB:.1f} GiB at this size), "
            f"and {available / GIB:.1f} GiB is free",
            field="$.model",
            details=_numbers(result),
        )
    if in_ram > resources.ram_available:
        raise Invalid(
            f"{spec.model.name} keeps {in_ram / GIB:.1f} GiB of weights in RAM to fit the GPU, and "
            f"{resources.ram_available / GIB:.1f} GiB of RAM is available",
            field="$.model",
            details=_numbers(result) | {"ram_needed_bytes": in_ram, "ram_available_bytes": resources.ram_available},
        )
    return result, tiling


def _memory_name(gpu: bool, device: str) -> str:
    return f"{device} memory" if gpu else "RAM"


def _numbers(f: Fit) -> dict[str, Any]:
    return {
        "device": f.device,
        "need_bytes": f.need,
        "available_bytes": f.available,
        "weights_bytes": f.weights.total,
        "compute_bytes": f.compute,
        "chosen": dict(f.chosen),
    }


def describe(f: Fit) -> dict[str, Any]:
    """The fit as the API shows it."""
    return {
        **_numbers(f),
        "fits": f.fits,
        "weights": {"diffusion": f.weights.diffusion, "text_encoders": f.weights.text, "vae": f.weights.vae,
                    "other": f.weights.other},
    }  # fmt: skip
