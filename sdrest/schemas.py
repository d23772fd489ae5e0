"""Request and response structs of the native API (`/api/v1`): the contract, with limits in the types.

Static limits live in the types; limits that are settings (sizes, batch, prompt length) are checked by
`jobs.requests` once the model's architecture is known. Decoders are built once, here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from sdrest.engine_options import EngineOptions
from sdrest.inputs import ImageInput, Padding
from sdrest.views import ModelView

# sd.cpp's sampling methods and schedulers (the binding's SAMPLE_METHOD_MAP / SCHEDULER_MAP minus their sentinels;
# tests/test_engine_contract.py checks these against the binding).
SAMPLERS = (
    "euler", "euler_a", "heun", "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "ipndm", "ipndm_v", "lcm",
    "ddim_trailing", "tcd", "res_multistep", "res_2s", "er_sde",
)  # fmt: skip
SCHEDULERS = (
    "discrete", "karras", "exponential", "ays", "gits", "sgm_uniform", "simple", "smoothstep", "kl_optimal", "lcm",
    "bong_tangent",
)  # fmt: skip
OUTPUT_FORMATS = ("png", "jpeg", "webp")
PREVIEW_METHODS = ("proj", "tae", "vae")

# Hard caps that hold whatever the settings say (the settings narrow them further).
MAX_PROMPT = 100_000
MAX_SEARCH = 1000  # GET /jobs?q=: text searched in prompts (a URL carries it)
MAX_SIDE = 8192

Name = Annotated[str, Meta(min_length=1, max_length=512)]


class Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every request struct: unknown fields are an error (a typo must not be silently ignored)."""


class LoraSpec(Struct):
    name: Name
    weight: Annotated[float, Meta(ge=-10, le=10)] = 1.0


class PreviewSpec(Struct):
    """Live previews over SSE: sd.cpp's `proj` (cheap latent projection), `tae` or `vae` decoding, every N steps.
    Without a method: `tae` when the library has a TAESD for the model's architecture, else `proj`."""

    method: Literal["proj", "tae", "vae"] | None = None
    interval: Annotated[int, Meta(ge=1, le=1000)] = 1


HIRES_UPSCALERS = ("latent", "latent_nearest", "latent_nearest_exact", "latent_antialiased", "latent_bicubic",
                   "latent_bicubic_antialiased", "lanczos", "nearest")  # fmt: skip
CACHE_MODES = ("easycache", "ucache", "dbcache", "taylorseer", "cachedit", "spectrum")
Strength = Annotated[float, Meta(ge=0, le=1)]


class ControlRequest(Struct):
    """ControlNet: a library model, the control image (or the image to take canny edges of), and its weight."""

    model: Name
    image: ImageInput
    strength: Annotated[float, Meta(ge=0, le=2)] = 0.9
    preprocess: Literal["none", "canny"] = "none"


class HiresRequest(Struct):
    """Hires fix: a second pass at `scale` times the size (or at `width`×`height`), upscaled by a latent mode or a
    library upscaler model, with `steps` (0: as many as the first pass) at `denoising_strength`."""

    scale: Annotated[float, Meta(gt=1, le=4)] | None = None
    width: Annotated[int, Meta(ge=64, le=MAX_SIDE)] | None = None
    height: Annotated[int, Meta(ge=64, le=MAX_SIDE)] | None = None
    upscaler: Name = "latent"
    steps: Annotated[int, Meta(ge=0, le=150)] = 0
    denoising_strength: Strength = 0.7


class UpscaleAfter(Struct):
    """Run a library upscaler over the finished images; `factor` defaults to the model's own scale."""

    model: Name
    factor: Annotated[float, Meta(ge=1, le=8)] | None = None


class PhotoMakerRequest(Struct):
    id_images: Annotated[list[ImageInput], Meta(min_length=1, max_length=8)]
    style_strength: Annotated[float, Meta(ge=0, le=100)] = 20.0


class SlgRequest(Struct):
    """Skip-layer guidance (SD3.5 medium, Wan): sd.cpp's `--slg-scale`, `--skip-layers`, start and end."""

    scale: Annotated[float, Meta(ge=0, le=10)] = 2.5
    layers: Annotated[list[Annotated[int, Meta(ge=0, le=100)]], Meta(max_length=32)] = msgspec.field(
        default_factory=lambda: [7, 8, 9]
    )
    start: Strength = 0.01
    end: Strength = 0.2


class CacheRequest(Struct):
    """A step-cache mode of the binding (fewer model evaluations, some quality loss); `threshold` its reuse
    threshold."""

    mode: Literal[CACHE_MODES]  # type: ignore[valid-type]
    threshold: Annotated[float, Meta(ge=0, le=10)] | None = None


class WebhookRequest(Struct):
    """Tell `url` (POST, JSON, signed) when the job reaches one of `events`."""

    url: Annotated[str, Meta(min_length=8, max_length=2048)]
    events: Annotated[list[Literal["started", "completed", "failed", "cancelled"]], Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["completed", "failed", "cancelled"]
    )


class GenerateRequest(Struct, kw_only=True):
    """A generation job. Omitted values take the model's architecture defaults (size, steps, CFG scale). The mode
    follows from the fields: `init_image` makes it img2img, with `mask` inpainting, with `outpaint` outpainting."""

    prompt: Annotated[str, Meta(max_length=MAX_PROMPT)]
    negative_prompt: Annotated[str, Meta(max_length=MAX_PROMPT)] = ""
    model: Name | None = None
    width: Annotated[int, Meta(ge=1, le=MAX_SIDE)] | None = None
    height: Annotated[int, Meta(ge=1, le=MAX_SIDE)] | None = None
    steps: Annotated[int, Meta(ge=1, le=150)] | None = None
    cfg_scale: Annotated[float, Meta(ge=0, le=100)] | None = None
    guidance: Annotated[float, Meta(ge=0, le=100)] = 3.5
    sampling_method: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    scheduler: Literal[SCHEDULERS] | None = None  # type: ignore[valid-type]
    eta: Annotated[float, Meta(ge=0, le=10)] | None = None
    seed: Annotated[int, Meta(ge=-1, le=2**63 - 1)] = -1
    batch_count: Annotated[int, Meta(ge=1, le=64)] = 1
    clip_skip: Annotated[int, Meta(ge=-1, le=12)] = -1
    vae: Name | None = None
    taesd: Name | None = None
    loras: list[LoraSpec] = []
    output_format: Literal["png", "jpeg", "webp"] = "png"
    preview: PreviewSpec | None = None
    init_image: ImageInput | None = None
    strength: Strength = 0.75
    mask: ImageInput | None = None
    mask_blur: Annotated[int, Meta(ge=0, le=64)] = 4
    invert_mask: bool = False
    outpaint: Padding | None = None
    control: ControlRequest | None = None
    hires: HiresRequest | None = None
    upscale: UpscaleAfter | None = None
    ref_images: Annotated[list[ImageInput], Meta(max_length=8)] = []
    photomaker: PhotoMakerRequest | None = None
    vae_tiling: bool | None = None  # None: on for images over 1024x1024 pixels
    flow_shift: Annotated[float, Meta(ge=0, le=100)] | None = None
    slg: SlgRequest | None = None
    cache: CacheRequest | None = None
    webhook: WebhookRequest | None = None
    engine: EngineOptions | None = None  # load options for this request (a different set reloads the model)
    decode: Literal["vae", "taesd"] | None = None  # taesd: the library's tiny autoencoder decodes (much faster)
    preset: Name | None = None  # a saved preset (models/presets/<name>.json) whose values this request's override


class UpscaleRequest(Struct, kw_only=True):
    """A standalone upscale: one image through a library upscaler, by `factor` (default: the model's scale)."""

    image: ImageInput
    model: Name | None = None
    factor: Annotated[float, Meta(ge=1, le=8)] | None = None
    tile: Annotated[int, Meta(ge=32, le=1024)] = 128
    output_format: Literal["png", "jpeg", "webp"] = "png"
    webhook: WebhookRequest | None = None


class HighNoiseRequest(Struct):
    """Wan 2.2 A14B: sampling settings of the high-noise model (defaults: the low-noise ones)."""

    steps: Annotated[int, Meta(ge=1, le=150)] | None = None
    cfg_scale: Annotated[float, Meta(ge=0, le=100)] | None = None
    sampling_method: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    scheduler: Literal[SCHEDULERS] | None = None  # type: ignore[valid-type]


class VideoRequest(Struct, kw_only=True):
    """A Wan video: text-to-video, image-to-video (`init_image`) or first/last frame (`init_image` + `end_image`)."""

    prompt: Annotated[str, Meta(max_length=MAX_PROMPT)]
    negative_prompt: Annotated[str, Meta(max_length=MAX_PROMPT)] = ""
    model: Name | None = None
    width: Annotated[int, Meta(ge=1, le=MAX_SIDE)] | None = None
    height: Annotated[int, Meta(ge=1, le=MAX_SIDE)] | None = None
    frames: Annotated[int, Meta(ge=1, le=241)] = 33
    fps: Annotated[int, Meta(ge=1, le=60)] = 16
    steps: Annotated[int, Meta(ge=1, le=150)] | None = None
    cfg_scale: Annotated[float, Meta(ge=0, le=100)] | None = None
    sampling_method: Literal[SAMPLERS] | None = None  # type: ignore[valid-type]
    scheduler: Literal[SCHEDULERS] | None = None  # type: ignore[valid-type]
    seed: Annotated[int, Meta(ge=-1, le=2**63 - 1)] = -1
    flow_shift: Annotated[float, Meta(ge=0, le=100)] | None = None
    strength: Strength = 0.75
    init_image: ImageInput | None = None
    end_image: ImageInput | None = None
    high_noise: HighNoiseRequest | None = None
    loras: list[LoraSpec] = []
    output_format: Literal["webp", "mp4", "frames"] = "webp"
    vae_tiling: bool = False
    webhook: WebhookRequest | None = None


class JobLinks(msgspec.Struct):
    self: str
    events: str


class JobError(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] = {}


class Progress(msgspec.Struct, omit_defaults=True):
    """A generation's steps (`step`, `steps`, `image`, `images`, it/s, ETA), or a task's amount (`done` of `total`
    `unit`s at `rate` per second); `fraction` for both."""

    step: int = 0
    steps: int = 0
    image: int = 1
    images: int = 1
    fraction: float = 0.0
    it_per_s: float | None = None
    eta_seconds: float | None = None
    done: int | None = None
    total: int | None = None
    unit: str | None = None
    rate: float | None = None


class Output(msgspec.Struct):
    filename: str
    url: str
    seed: int
    width: int
    height: int
    media_type: str


class Job(msgspec.Struct, omit_defaults=True):
    """A job as the API shows it."""

    id: str
    status: str
    kind: str
    created_at: float
    model: str | None = None
    architecture: str | None = None
    position: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    progress: Progress | None = None
    params: dict[str, Any] = {}
    outputs: list[Output] = []
    warnings: list[str] = []
    timings: dict[str, float] = {}  # seconds: load, generate
    result: dict[str, Any] = {}
    error: JobError | None = None
    links: JobLinks | None = None


generate_decoder = msgspec.json.Decoder(GenerateRequest)
upscale_decoder = msgspec.json.Decoder(UpscaleRequest)
video_decoder = msgspec.json.Decoder(VideoRequest)


# -- responses of the other routes ------------------------------------------------------------------------------------


class JobList(msgspec.Struct):
    jobs: list[Job]
    total: int
    limit: int
    offset: int


class QueuedJob(msgspec.Struct):
    id: str
    position: int


class QueueState(msgspec.Struct):
    running: str | None
    progress: Progress | None
    queued: list[QueuedJob]
    length: int
    limit: int


class WorkerStatus(msgspec.Struct):
    state: str  # stopped, starting, idle, loading, generating
    pid: int | None
    loaded: dict[str, str] | None  # the loading plan in memory
    last_error: str | None
    memory_bytes: int | None = None  # the worker's resident memory
    model: str | None = None  # the library name of the loaded model


class QueueSummary(msgspec.Struct):
    length: int
    running: str | None


class Health(msgspec.Struct):
    status: str  # ok, degraded (the engine cannot start)
    worker: WorkerStatus
    queue: QueueSummary
    engine_error: str | None


class Version(msgspec.Struct):
    sdrest: str
    binding: str | None
    sd_cpp: str | None
    backend: str | None
    backends: list[str]
    tinyblas: bool | None
    engine_error: str | None


class Names(msgspec.Struct):
    names: list[str]
    default: str


class StepLimits(msgspec.Struct):
    min: int
    max: int


class ModelList(msgspec.Struct):
    models: list[ModelView]


class Limits(msgspec.Struct):
    min_side: int
    max_side: int
    max_pixels: int
    max_batch: int
    max_prompt_chars: int
    steps: StepLimits
    queue_size: int
    max_body_bytes: int
    output_formats: list[str]
    preview_methods: list[str]
    memory_available_bytes: int | None = None  # RAM free for the worker now
