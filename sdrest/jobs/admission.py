"""Admission: turn a request into a job spec, or refuse it with the field to fix.

Everything a job could fail on that is knowable before it runs is refused here: a model that is missing, broken or
lacks companions, a LoRA not in the library or made for another model family, a size the architecture cannot produce.
Models, LoRAs and defaults are resolved once, here; the spec then travels unchanged to the worker.
"""

from __future__ import annotations

import secrets
import time
import uuid

from sdrest.jobs.errors import Invalid
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library.architectures import ARCHITECTURES, Arch, lora_refusal
from sdrest.library.catalog import Catalog, ModelFile, UnknownModel
from sdrest.library.plan import PlanError, make_plan
from sdrest.schemas import GenerateRequest
from sdrest.settings import Settings
from sdrest.specs import LORA_TAG, LoraUse, ModelUse, Preview, Txt2Img

GENERATORS = ("checkpoint", "diffusion_model")
_SLOT_FIELDS = {"vae": "$.vae", "taesd": "$.taesd"}


def choose_model(catalog: Catalog, name: str | None, loaded: dict[str, str] | None) -> ModelFile:
    """The named model; without a name the loaded one, else the library's only generating model."""
    if name:
        try:
            return catalog.get(name, roles=GENERATORS)
        except UnknownModel as e:
            raise Invalid(str(e), field="$.model") from e
    candidates = [e for e in catalog.entries if e.role in GENERATORS and not e.broken]
    if not candidates:  # a model dropped into the library since the last scan counts at once
        candidates = [e for e in catalog.scan() if e.role in GENERATORS and not e.broken]
    for entry in candidates:
        if loaded is not None and entry.path in loaded.values():
            return entry
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise Invalid(
            f"the library ({catalog.models_dir}) has no model that generates images: put one in its checkpoints/ or "
            "diffusion_models/ folder",
            field="$.model",
        )
    names = ", ".join(e.name for e in candidates[:10])
    raise Invalid(f"name a model: the library has {len(candidates)} ({names})", field="$.model")


def split_lora_tags(prompt: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The prompt without its `<lora:name:weight>` tags, and the tags as (whole tag, name, weight text)."""
    tags = [(match.group(0), match.group(1), match.group(2)) for match in LORA_TAG.finditer(prompt)]
    return LORA_TAG.sub("", prompt).strip(), tags


def resolve_loras(
    tags: list[tuple[str, str, str]], named: list[tuple[str, float]], catalog: Catalog, arch: Arch
) -> list[LoraUse]:
    """The LoRA files to apply, from prompt tags and the `loras` field; the same file twice adds its weights."""
    found: list[tuple[str, float, str]] = []
    for tag, name, weight_text in tags:
        try:
            weight = float(weight_text)
        except ValueError:
            raise Invalid(f"the LoRA tag {tag} has no numeric weight", field="$.prompt") from None
        found.append((name, weight, "$.prompt"))
    found += [(name, weight, f"$.loras[{i}].name") for i, (name, weight) in enumerate(named)]
    uses: dict[str, LoraUse] = {}
    for name, weight, field in found:
        try:
            entry = catalog.get(name, roles=("lora",))
        except UnknownModel as e:
            raise Invalid(f"unknown LoRA: {e}", field=field) from e
        if entry.broken:
            raise Invalid(f"the LoRA {entry.name} cannot be read: {entry.error}", field=field)
        refusal = lora_refusal(arch, entry.details.get("target", "unknown"))
        if refusal is not None:
            raise Invalid(f"the LoRA {entry.name} {refusal}", field=field)
        if ":" in entry.path or ">" in entry.path:
            raise Invalid(f"the LoRA file name {entry.name} contains ':' or '>', which sd.cpp cannot read", field=field)
        before = uses.get(entry.path)
        uses[entry.path] = LoraUse(name, entry.path, weight + (before.weight if before else 0.0))
    return list(uses.values())


def _check_size(name: str, value: int, arch: Arch, settings: Settings) -> None:
    field = f"$.{name}"
    if not 64 <= value <= settings.max_side:
        raise Invalid(f"{name} must be between 64 and {settings.max_side} pixels, not {value}", field=field)
    if value % arch.size_multiple:
        raise Invalid(f"{name} must be a multiple of {arch.size_multiple} for {arch.label}, not {value}", field=field)


def admit(
    request: GenerateRequest, catalog: Catalog, settings: Settings, loaded: dict[str, str] | None = None
) -> JobRecord:
    """A queued job for `request`, or an `Invalid` error naming what is wrong. Reads the library: call it from a
    thread, not the event loop."""
    if len(request.prompt) > settings.max_prompt_chars or len(request.negative_prompt) > settings.max_prompt_chars:
        field = "$.prompt" if len(request.prompt) > settings.max_prompt_chars else "$.negative_prompt"
        raise Invalid(f"prompts are limited to {settings.max_prompt_chars} characters", field=field)
    if request.batch_count > settings.max_batch:
        raise Invalid(f"batch_count is limited to {settings.max_batch}", field="$.batch_count")
    entry = choose_model(catalog, request.model, loaded)
    if entry.broken:
        raise Invalid(f"{entry.name} cannot be read: {entry.error}", field="$.model")
    overrides = {k: v for k, v in (("vae", request.vae), ("taesd", request.taesd)) if v is not None}
    try:
        plan = make_plan(entry, catalog.entries, overrides=overrides)
    except PlanError as e:
        raise Invalid(str(e), field=_SLOT_FIELDS.get(e.slot or "", "$.model")) from e
    crash = catalog.crashed(plan.args.values())
    if crash:
        raise Invalid(f"{entry.name} is marked broken: {crash}. Replace the file to try again", field="$.model")
    arch = ARCHITECTURES[plan.architecture]
    width = request.width or arch.default_size
    height = request.height or arch.default_size
    _check_size("width", width, arch, settings)
    _check_size("height", height, arch, settings)
    if width * height > settings.max_pixels:
        raise Invalid(f"{width}x{height} is more than the {settings.max_pixels}-pixel limit", field="$.width")
    clean_prompt, tags = split_lora_tags(request.prompt)
    named = [(spec.name, spec.weight) for spec in request.loras]
    spec = Txt2Img(
        model=ModelUse(entry.name, arch.id, plan.args, entry.path),
        prompt=request.prompt,
        clean_prompt=clean_prompt,
        negative_prompt=request.negative_prompt,
        width=width,
        height=height,
        steps=request.steps or arch.default_steps,
        cfg_scale=request.cfg_scale if request.cfg_scale is not None else arch.default_cfg,
        guidance=request.guidance,
        sampling_method=request.sampling_method or arch.default_sampler,
        scheduler=request.scheduler,
        eta=request.eta,
        seed=request.seed if request.seed >= 0 else secrets.randbelow(2**32),
        batch_count=request.batch_count,
        clip_skip=request.clip_skip,
        output_format=request.output_format,
        loras=resolve_loras(tags, named, catalog, arch),
        named_loras=named,
        vae=request.vae,
        taesd=request.taesd,
        preview=Preview(request.preview.method, request.preview.interval) if request.preview else None,
    )
    return JobRecord(id=uuid.uuid4().hex, status=QUEUED, created_at=time.time(), spec=spec, warnings=plan.warnings)
