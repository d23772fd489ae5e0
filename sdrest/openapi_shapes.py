"""The answers the OpenAPI document describes that have no struct of their own in the routes: the native API's small
replies, and the AUTOMATIC1111 and OpenAI families' shapes (their handlers build plain dicts)."""

from __future__ import annotations

from typing import Any

import msgspec

from sdrest.library.starters import Starter
from sdrest.library.trash import TrashEntry
from sdrest.schemas import Job, WorkerStatus
from sdrest.views import ModelView

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET


# -- answers that have no struct of their own in the routes ----------------------------------------------------------


class ErrorDetail(msgspec.Struct):
    code: str  # stable: bad_request, unauthorized, forbidden, not_found, validation_error, queue_full, ...
    message: str
    field: str | Unset = UNSET  # the JSON path of the bad value (`$.width`) or the parameter's name
    details: dict[str, Any] | Unset = UNSET


class ErrorResponse(msgspec.Struct):
    """The native API's one error shape (`sdrest.errors`)."""

    error: ErrorDetail


class ModelPage(msgspec.Struct):
    models: list[ModelView]
    total: int
    page: int
    limit: int


class RoleCount(msgspec.Struct):
    role: str
    count: int
    folder: str


class RoleList(msgspec.Struct):
    roles: list[RoleCount]


class Directory(msgspec.Struct):
    name: str
    role: str | None
    path: str
    exists: bool
    writable: bool
    files: int
    bytes: int


class DirectoryList(msgspec.Struct):
    directories: list[Directory]


class FileCount(msgspec.Struct):
    files: int
    bytes: int


class LibraryStats(msgspec.Struct):
    files: int
    bytes: int
    broken: int
    by_role: dict[str, FileCount]
    disk_free: int
    models_dir: str


class Rescan(msgspec.Struct):
    files: int


class ValidationReport(msgspec.Struct):
    model: str
    ok: bool
    errors: list[str]
    warnings: list[str]
    plan: dict[str, str] | Unset = UNSET
    loaded: bool | Unset = UNSET  # after a test load (`{"load": true}`)
    broken: bool | Unset = UNSET  # the test load crashed: the file is marked broken


class Pulled(msgspec.Struct):
    name: str
    jobs: list[Job]


class StarterList(msgspec.Struct):
    starters: list[Starter]


class RemoteFile(msgspec.Struct):
    """`library.downloads.RemoteFile`'s shape (that module imports huggingface_hub, slow to load, only when asked)."""

    filename: str
    size: int | None
    sha256: str | None


class RemoteList(msgspec.Struct):
    repo_id: str
    files: list[RemoteFile]


class TrashList(msgspec.Struct):
    trash: list[TrashEntry]


class NameList(msgspec.Struct):
    names: list[str]


class Preset(msgspec.Struct):
    name: str
    value: dict[str, Any]  # generation fields


class Template(msgspec.Struct):
    name: str
    value: str


class Disk(msgspec.Struct):
    path: str
    total: int
    free: int


class SystemInfo(msgspec.Struct):
    cpu: dict[str, Any]
    memory: dict[str, int | None]
    backend: str | None
    backends: list[str]
    devices: list[Any]
    disks: dict[str, Disk]
    worker: WorkerStatus
    engine_error: str | None


class Seconds(msgspec.Struct):
    load: float | None  # 0 when the model is loaded already; None when no past job of the model tells
    generate: float | None
    total: float | None
    jobs: int  # past jobs the estimate comes from


class Estimate(msgspec.Struct):
    model: str
    architecture: str
    fits: bool
    message: str | None  # why it does not fit, with the numbers
    memory: dict[str, Any] | None  # device, need_bytes, available_bytes, weights_bytes, compute_bytes, chosen options
    seconds: Seconds
    queue: dict[str, int]
    warnings: list[str]


# AUTOMATIC1111's shapes (`/sdapi/v1`)


class A1111Error(msgspec.Struct):
    error: str
    detail: str
    body: str
    errors: str


class A1111Images(msgspec.Struct):
    images: list[str]  # base64
    parameters: dict[str, Any]  # the request as sent
    info: str  # JSON text: infotexts, seed, all_seeds, width, height, sampler_name, ...


class A1111Extra(msgspec.Struct):
    html_info: str
    image: str


class A1111ExtraBatch(msgspec.Struct):
    html_info: str
    images: list[str]


class A1111PngInfo(msgspec.Struct):
    info: str
    items: dict[str, str]
    parameters: dict[str, Any]


class A1111State(msgspec.Struct):
    skipped: bool
    interrupted: bool
    job: str
    job_count: int
    job_timestamp: str
    job_no: int
    sampling_step: int
    sampling_steps: int


class A1111Progress(msgspec.Struct):
    progress: float
    eta_relative: float
    state: A1111State
    current_image: str | None
    textinfo: str | None


class A1111Model(msgspec.Struct):
    title: str
    model_name: str
    hash: str | None
    sha256: str | None
    filename: str
    config: None


class A1111File(msgspec.Struct):
    model_name: str
    filename: str


class A1111Lora(msgspec.Struct):
    name: str
    alias: str
    path: str
    metadata: dict[str, Any]


class A1111Embedding(msgspec.Struct):
    step: int | None
    sd_checkpoint: str | None
    sd_checkpoint_name: str | None
    shape: int
    vectors: int


class A1111Embeddings(msgspec.Struct):
    loaded: dict[str, A1111Embedding]
    skipped: dict[str, Any]


class A1111Sampler(msgspec.Struct):
    name: str
    aliases: list[str]
    options: dict[str, Any]


class A1111Scheduler(msgspec.Struct):
    name: str
    label: str
    aliases: list[str] | None
    default_rho: float
    need_inner_model: bool


class A1111Upscaler(msgspec.Struct):
    name: str
    model_name: str | None
    model_path: str | None
    model_url: str | None
    scale: float


class A1111LatentMode(msgspec.Struct):
    name: str


class A1111Ram(msgspec.Struct):
    free: int
    used: int
    total: int


class A1111Memory(msgspec.Struct):
    ram: A1111Ram
    cuda: dict[str, Any]


class A1111Flags(msgspec.Struct):
    api: bool
    listen: bool
    port: int
    ckpt_dir: str
    data_dir: str


# OpenAI's shapes (`/v1`)


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIError(msgspec.Struct):
    error: OpenAIErrorDetail


class OpenAIImage(msgspec.Struct):
    b64_json: str | Unset = UNSET  # with response_format b64_json (the default)
    url: str | Unset = UNSET  # with response_format url: signed, valid for an hour


class OpenAIImages(msgspec.Struct):
    created: int
    data: list[OpenAIImage]
    background: str
    output_format: str
    size: str
    quality: str | Unset = UNSET


class OpenAIModel(msgspec.Struct):
    id: str
    object: str
    created: int
    owned_by: str


class OpenAIModelList(msgspec.Struct):
    object: str
    data: list[OpenAIModel]
