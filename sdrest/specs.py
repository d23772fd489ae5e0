"""Job specs: what a job will do, fully resolved at admission and carried unchanged to the engine.

One struct per job kind in a tagged union (`kind` is the tag). Admission fills every default, resolves models and
LoRAs to library files, and picks the seed; the job store persists the spec as it is; the worker turns it into binding
arguments (`engine.calls`). Nothing re-keys it on the way. A new kind is a struct here, added to `JobSpec`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec

# `<lora:name:weight>` in a prompt, as A1111 and sd.cpp write it.
LORA_TAG = re.compile(r"<lora:([^:>]+):([^>]+)>")


class LoraUse(msgspec.Struct, frozen=True):
    """A LoRA resolved in the library: its name (as the client gave it), absolute path and weight."""

    name: str
    path: str
    weight: float


class Preview(msgspec.Struct, frozen=True):
    """Live previews: sd.cpp's `proj`, `tae` or `vae` decoding, every `interval` steps."""

    method: Literal["proj", "tae", "vae"] = "proj"
    interval: int = 1


class ModelUse(msgspec.Struct, frozen=True):
    """The model a job runs: its library name and architecture, and how it loads (binding arguments; `embeddings`
    are the textual-inversion files loaded with it)."""

    name: str
    architecture: str
    plan: dict[str, str]
    path: str  # the main file, whose hash the infotext records
    embeddings: list[str] = []
    options: dict[str, Any] = {}  # load options (settings < sidecar < request): part of the context's identity


class Control(msgspec.Struct, frozen=True):
    """ControlNet: the library model (its path is in the plan), the control image, its weight, canny preprocessing."""

    model: str
    image: str  # path of the stored input
    strength: float
    canny: bool = False


class Hires(msgspec.Struct, frozen=True):
    """Hires fix: a second pass at `width`×`height`; `upscaler` is a binding mode ("latent", "lanczos", ...) or
    "model" with `model` the library upscaler whose file is `model_path`."""

    width: int
    height: int
    scale: float
    upscaler: str
    steps: int  # 0: as many as the first pass
    denoising_strength: float
    model: str | None = None
    model_path: str | None = None


class PostUpscale(msgspec.Struct, frozen=True):
    """An upscaler run over the finished images (its file is the plan's `upscaler_path`)."""

    model: str
    factor: float
    model_scale: int = 4  # what one run of the upscaler multiplies by


class PhotoMaker(msgspec.Struct, frozen=True):
    id_images: list[str]  # paths of the stored inputs
    style_strength: float


class Slg(msgspec.Struct, frozen=True):
    """Skip-layer guidance (SD3.5, Wan)."""

    scale: float
    layers: list[int]
    start: float
    end: float


class Cache(msgspec.Struct, frozen=True):
    """One of the binding's step-cache modes; `threshold` is its reuse threshold (None: the mode's default)."""

    mode: str
    threshold: float | None = None


class Padding(msgspec.Struct, frozen=True):
    left: int = 0
    right: int = 0
    top: int = 0
    bottom: int = 0


class Spec(msgspec.Struct, kw_only=True, tag_field="kind"):
    """Base of every job kind."""


class Txt2Img(Spec, kw_only=True, tag="txt2img"):
    """An image from a prompt. `prompt` is the client's text (LoRA tags included, as the infotext records it);
    `clean_prompt` is the same without the tags, which the engine sends with the resolved LoRA files instead."""

    model: ModelUse
    prompt: str
    clean_prompt: str
    negative_prompt: str = ""
    width: int
    height: int
    steps: int
    cfg_scale: float
    guidance: float
    sampling_method: str
    scheduler: str | None = None
    eta: float | None = None
    seed: int
    batch_count: int = 1
    clip_skip: int = -1
    output_format: Literal["png", "jpeg", "webp"] = "png"
    loras: list[LoraUse] = []
    named_loras: list[tuple[str, float]] = []  # the `loras` field as the client sent it
    vae: str | None = None
    taesd: str | None = None
    preview: Preview | None = None
    # what the other modes add to an image from a prompt
    control: Control | None = None
    hires: Hires | None = None
    upscale: PostUpscale | None = None
    ref_images: list[str] = []  # paths of the stored inputs
    photomaker: PhotoMaker | None = None
    vae_tiling: bool = False
    flow_shift: float | None = None
    slg: Slg | None = None
    cache: Cache | None = None


class Img2Img(Txt2Img, kw_only=True, tag="img2img"):
    """An image from a prompt and an input image: img2img, inpainting (with `mask`, white = repaint) and outpainting
    (`outpaint`: the server padded the canvas and drew the mask; `init_image` and `mask` are those)."""

    init_image: str  # path of the stored input
    strength: float = 0.75
    mask: str | None = None
    mask_blur: int = 0
    invert_mask: bool = False
    outpaint: Padding | None = None

    @property
    def mode(self) -> str:
        return "outpaint" if self.outpaint else "inpaint" if self.mask else "img2img"


class Upscale(Spec, kw_only=True, tag="upscale"):
    """An upscaler model run over one image."""

    model: ModelUse  # plan: {"upscaler_path": ...}
    image: str  # path of the stored input
    factor: float
    model_scale: int = 4
    tile: int = 128
    output_format: Literal["png", "jpeg", "webp"] = "png"
    seed: int = 0  # outputs are named by seed; an upscale has none


class HighNoise(msgspec.Struct, frozen=True):
    """Wan 2.2 A14B's high-noise model's own sampling settings."""

    steps: int
    cfg_scale: float
    sampling_method: str
    scheduler: str | None = None


class Video(Spec, kw_only=True, tag="video"):
    """A video from a prompt (Wan T2V), an image (`init_image`, I2V), or first and last frames (`end_image`)."""

    model: ModelUse
    prompt: str
    clean_prompt: str
    negative_prompt: str = ""
    width: int
    height: int
    frames: int
    fps: int
    steps: int
    cfg_scale: float
    sampling_method: str
    scheduler: str | None = None
    seed: int
    flow_shift: float | None = None
    strength: float = 0.75
    init_image: str | None = None
    end_image: str | None = None
    high_noise: HighNoise | None = None
    loras: list[LoraUse] = []
    output_format: Literal["webp", "mp4", "frames"] = "webp"
    vae_tiling: bool = False


class Load(Spec, kw_only=True, tag="load"):
    """Load a model into the worker (through the generation lane, so it never races a generation)."""

    model: ModelUse


class Unload(Spec, kw_only=True, tag="unload"):
    """Free the loaded model and its worker."""


class Convert(Spec, kw_only=True, tag="convert"):
    """Quantize a library file to GGUF (the side lane)."""

    source: str  # library name
    source_path: str
    output: str  # library name of the result
    output_path: str
    type: str
    force: bool = False


class Hash(Spec, kw_only=True, tag="hash"):
    """SHA-256 (and A1111's short hashes) of library files (the side lane)."""

    models: list[tuple[str, str]]  # (library name, path)


class Download(Spec, kw_only=True, tag="download"):
    """A file from a Hugging Face repository or an https URL into the library (the side lane)."""

    repo_id: str | None = None
    filename: str
    revision: str | None = None
    url: str | None = None
    role: str | None = None  # the folder's role; None: from the file's detected role once downloaded
    folder: str  # the library folder it lands in first


JobSpec = Txt2Img | Img2Img | Upscale | Video | Load | Unload | Convert | Hash | Download  # every kind, one added here
KINDS = tuple(t.__struct_config__.tag for t in JobSpec.__args__)
EngineSpec = Txt2Img | Img2Img | Upscale | Video | Load  # what the generation worker runs
OutputSpec = Txt2Img | Img2Img | Upscale | Video  # what makes files
TASK_KINDS = ("convert", "hash", "download")  # run on the side lane; every other kind on the generation lane


_HIDDEN = {"model", "clean_prompt", "loras", "named_loras", "init_image", "mask", "image", "end_image", "ref_images",
           "source_path", "output_path"}  # fmt: skip


def public_params(spec: JobSpec) -> dict[str, Any]:
    """The parameters as the API shows them: what the client asked for, every default filled in (input images and
    file paths are not repeated)."""
    if isinstance(spec, Load | Unload):
        return {}
    if not isinstance(spec, Txt2Img):
        shown: dict[str, Any] = msgspec.to_builtins(
            {k: v for k, v in msgspec.structs.asdict(spec).items() if k not in _HIDDEN}
        )
        if isinstance(spec, Video):
            shown.update(init_image=spec.init_image is not None, end_image=spec.end_image is not None)
        return shown
    params: dict[str, Any] = {
        "prompt": spec.prompt,
        "negative_prompt": spec.negative_prompt,
        "width": spec.width,
        "height": spec.height,
        "steps": spec.steps,
        "cfg_scale": spec.cfg_scale,
        "guidance": spec.guidance,
        "sampling_method": spec.sampling_method,
        "scheduler": spec.scheduler,
        "eta": spec.eta,
        "seed": spec.seed,
        "batch_count": spec.batch_count,
        "clip_skip": spec.clip_skip,
        "output_format": spec.output_format,
    }
    if spec.named_loras:
        params["loras"] = [{"name": name, "weight": weight} for name, weight in spec.named_loras]
    if spec.vae is not None or spec.taesd is not None:
        params["vae"], params["taesd"] = spec.vae, spec.taesd
    if spec.preview is not None:
        params["preview"] = msgspec.structs.asdict(spec.preview)
    extra = {
        "control": spec.control and {**msgspec.to_builtins(spec.control), "image": None},
        "hires": spec.hires and {k: v for k, v in msgspec.to_builtins(spec.hires).items() if k != "model_path"},
        "upscale": spec.upscale and msgspec.to_builtins(spec.upscale),
        "photomaker": spec.photomaker and {"style_strength": spec.photomaker.style_strength},
        "slg": spec.slg and msgspec.to_builtins(spec.slg),
        "cache": spec.cache and msgspec.to_builtins(spec.cache),
        "flow_shift": spec.flow_shift,
    }
    params.update({k: v for k, v in extra.items() if v is not None})
    if spec.control is not None:
        params["control"].pop("image")
    if spec.ref_images:
        params["ref_images"] = len(spec.ref_images)
    if spec.vae_tiling:
        params["vae_tiling"] = True
    if isinstance(spec, Img2Img):
        params.update(mode=spec.mode, strength=spec.strength, mask_blur=spec.mask_blur, invert_mask=spec.invert_mask)
        if spec.outpaint is not None:
            params["outpaint"] = msgspec.to_builtins(spec.outpaint)
    return params
