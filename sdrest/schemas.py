"""Request and response structs of the native API (`/api/v1`): the contract, with limits in the types.

Static limits live in the types; limits that are settings (sizes, batch, prompt length) are checked by
`jobs.requests` once the model's architecture is known. Decoders are built once, here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

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
MAX_SIDE = 8192

Name = Annotated[str, Meta(min_length=1, max_length=512)]


class Struct(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Base of every request struct: unknown fields are an error (a typo must not be silently ignored)."""


class LoraSpec(Struct):
    name: Name
    weight: Annotated[float, Meta(ge=-10, le=10)] = 1.0


class PreviewSpec(Struct):
    """Live previews over SSE: sd.cpp's `proj` (cheap latent projection), `tae` or `vae` decoding, every N steps."""

    method: Literal["proj", "tae", "vae"] = "proj"
    interval: Annotated[int, Meta(ge=1, le=1000)] = 1


class GenerateRequest(Struct, kw_only=True):
    """A generation job. Omitted values take the model's architecture defaults (size, steps, CFG scale)."""

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


class JobLinks(msgspec.Struct):
    self: str
    events: str


class JobError(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] = {}


class Progress(msgspec.Struct):
    step: int
    steps: int
    image: int = 1
    images: int = 1
    fraction: float = 0.0
    it_per_s: float | None = None
    eta_seconds: float | None = None


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
    error: JobError | None = None
    links: JobLinks | None = None


generate_decoder = msgspec.json.Decoder(GenerateRequest)


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
    loaded: dict[str, str] | None
    last_error: str | None


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
