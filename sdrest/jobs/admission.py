"""Admission: turn a request into a job spec, or refuse it with the field to fix.

Everything a job could fail on that is knowable before it runs is refused here: a model that is missing, broken or
lacks companions, a LoRA not in the library or made for another model family, a size the architecture cannot produce.
Models, LoRAs and defaults are resolved once, here; the spec then travels unchanged to the worker.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

import msgspec

from sdrest import engine_options, inputs, video
from sdrest.engine_options import EngineOptions
from sdrest.jobs import modes
from sdrest.jobs.errors import Invalid
from sdrest.jobs.files import JobFiles
from sdrest.jobs.store import QUEUED, JobRecord
from sdrest.library.architectures import ARCHITECTURES, Arch, lora_refusal
from sdrest.library.catalog import Catalog, ModelFile, UnknownModel
from sdrest.library.plan import PlanError, make_plan
from sdrest.schemas import GenerateRequest, UpscaleRequest, VideoRequest
from sdrest.settings import Settings
from sdrest.specs import (
    LORA_TAG,
    Cache,
    HighNoise,
    Img2Img,
    Load,
    LoraUse,
    ModelUse,
    Padding,
    Preview,
    Slg,
    Txt2Img,
    Upscale,
    Video,
)

GENERATORS = ("checkpoint", "diffusion_model")
_SLOT_FIELDS = {"vae": "$.vae", "taesd": "$.taesd"}
AUTO_TILING_PIXELS = 1024 * 1024  # decode larger images in VAE tiles unless the request says otherwise


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


def input_limits(settings: Settings) -> inputs.Limits:
    return inputs.Limits(settings.max_input_bytes, settings.max_pixels, settings.allow_input_urls)


def _plan(
    entry: ModelFile,
    catalog: Catalog,
    overrides: Mapping[str, str | None],
    settings: Settings,
    requested: EngineOptions | None = None,
) -> tuple[Arch, dict[str, str], list[str], dict[str, Any]]:
    """The architecture, binding arguments, warnings and load options (settings < sidecar < request)."""
    try:
        plan = make_plan(entry, catalog.entries, overrides=overrides)
    except PlanError as e:
        raise Invalid(str(e), field=_SLOT_FIELDS.get(e.slot or "", "$.model")) from e
    crash = catalog.crashed(plan.args.values())
    if crash:
        raise Invalid(f"{entry.name} is marked broken: {crash}. Replace the file to try again", field="$.model")
    try:
        options = engine_options.merge(
            engine_options.parse(settings.engine_options, "the engine_options setting"),
            engine_options.parse(plan.engine, f"the sidecar of {entry.name}"),
            engine_options.parse(msgspec.to_builtins(requested) if requested else None, "engine"),
        )
    except engine_options.OptionsError as e:
        raise Invalid(str(e), field="$.engine" if str(e).startswith("engine") else "$.model") from e
    warnings = list(plan.warnings)
    if requested is not None:
        warnings.append("this request sets engine options: a model loaded with others is loaded again first")
    return ARCHITECTURES[plan.architecture], plan.args, warnings, options


# The tiny autoencoder that decodes each VAE family's latents (`decode: "taesd"`).
_TAESD_FOR = {"sd1": "taesd", "sd2": "taesd", "sdxl": "taesd", "flux": "taef1", "sd3": "taef1", "z_image": "taef1",
              "flux2": "taef2", "ernie_image": "taef2", "wan": "taew2_1", "qwen_image": "taew2_1"}  # fmt: skip


def _find_taesd(arch: Arch, catalog: Catalog) -> ModelFile | None:
    kind = _TAESD_FOR.get(arch.family)
    found = sorted((e for e in catalog.entries if e.role == "taesd" and not e.broken and e.architecture == kind),
                   key=lambda e: e.name)  # fmt: skip
    return found[0] if found else None


def _taesd_for(arch: Arch, catalog: Catalog) -> str:
    found = _find_taesd(arch, catalog)
    if found is None:
        kind = _TAESD_FOR.get(arch.family)
        raise Invalid(f"decode: no TAESD for {arch.label} ({kind}) in the library's taesd/ folder", field="$.decode")
    return found.name


# sd.cpp decodes SDXS with its TAESD whenever one is loaded, so for these a TAESD is never added for previews alone.
_TAE_DECODED = ("sdxs_512_ds", "sdxs_09")


def _preview_decoder(arch: Arch, catalog: Catalog, plan: dict[str, str], options: dict[str, Any]) -> bool:
    """Whether live previews can decode with a TAESD: the plan decodes with one, or the library has one for the
    architecture, which is then loaded for previews only (`tae_preview_only`: the image itself still goes through the
    VAE). Every image job of the model gets it, asked for previews or not, so they share one loaded context."""
    if "taesd_path" in plan:
        return True
    found = None if arch.id in _TAE_DECODED else _find_taesd(arch, catalog)
    if found is None:
        return False
    plan["taesd_path"] = found.path
    options["tae_preview_only"] = True
    return True


def _prompting(request: GenerateRequest | VideoRequest, catalog: Catalog, arch: Arch) -> dict[str, Any]:
    """The spec fields every prompted kind shares: both prompts, the LoRAs (parsed once, resolved) and the seed."""
    clean_prompt, tags = split_lora_tags(request.prompt)
    named = [(spec.name, spec.weight) for spec in request.loras]
    return {
        "prompt": request.prompt,
        "clean_prompt": clean_prompt,
        "negative_prompt": request.negative_prompt,
        "loras": resolve_loras(tags, named, catalog, arch),
        "named_loras": named,
        "seed": request.seed if request.seed >= 0 else secrets.randbelow(2**32),
    }


def _check_prompts(prompt: str, negative: str, settings: Settings) -> None:
    if len(prompt) > settings.max_prompt_chars or len(negative) > settings.max_prompt_chars:
        field = "$.prompt" if len(prompt) > settings.max_prompt_chars else "$.negative_prompt"
        raise Invalid(f"prompts are limited to {settings.max_prompt_chars} characters", field=field)


def admit(
    request: GenerateRequest,
    catalog: Catalog,
    settings: Settings,
    files: JobFiles,
    outputs: inputs.OutputResolver,
    loaded: dict[str, str] | None = None,
) -> JobRecord:
    """A queued job for `request`, its input images stored beside it, or an `Invalid` error naming what is wrong.
    Reads the library and writes files: call it from a thread, not the event loop."""
    _check_prompts(request.prompt, request.negative_prompt, settings)
    if request.batch_count > settings.max_batch:
        raise Invalid(f"batch_count is limited to {settings.max_batch}", field="$.batch_count")
    if request.mask is not None and request.init_image is None and request.outpaint is None:
        raise Invalid("a mask needs an init_image to paint into", field="$.mask")
    if request.outpaint is not None and request.init_image is None:
        raise Invalid("outpainting extends an init_image; give one", field="$.outpaint")
    entry = choose_model(catalog, request.model, loaded)
    if entry.broken:
        raise Invalid(f"{entry.name} cannot be read: {entry.error}", field="$.model")
    overrides: dict[str, str | None] = {
        k: v for k, v in (("vae", request.vae), ("taesd", request.taesd)) if v is not None
    }
    if request.decode == "taesd" and request.taesd is None:
        family = ARCHITECTURES.get(entry.architecture or "")
        if family is not None:
            overrides["taesd"] = _taesd_for(family, catalog)
    elif request.decode == "vae":
        overrides["taesd"] = None
    arch, plan, warnings, options = _plan(entry, catalog, overrides, settings, request.engine)
    if arch.family == "wan":
        raise Invalid(f"{entry.name} is a video model ({arch.label}); use POST /api/v1/video", field="$.model")
    job_id = uuid.uuid4().hex
    store = modes.Inputs(job_id, files, input_limits(settings), outputs)
    try:
        spec = _image_spec(request, entry, arch, plan, catalog, settings, store, options)
    except BaseException:
        files.remove(job_id)
        raise
    return JobRecord(id=job_id, status=QUEUED, created_at=time.time(), spec=spec, warnings=warnings + store.warnings)


def _image_spec(
    request: GenerateRequest,
    entry: ModelFile,
    arch: Arch,
    plan: dict[str, str],
    catalog: Catalog,
    settings: Settings,
    store: modes.Inputs,
    options: dict[str, Any],
) -> Txt2Img:
    fields: dict[str, Any] = {}
    width = request.width or arch.default_size
    height = request.height or arch.default_size
    if request.init_image is not None and request.outpaint is not None:
        image = store.load(request.init_image, "$.init_image").convert("RGB")
        try:
            canvas, mask = inputs.outpaint_canvas(image, request.outpaint, arch.size_multiple, blur=request.mask_blur)
        except inputs.InputError as e:
            raise Invalid(str(e), field=e.field) from e
        width, height = canvas.size
        _check_size("width", width, arch, settings)
        _check_size("height", height, arch, settings)
        p = request.outpaint
        fields.update(
            init_image=store.keep(canvas, "init.png"),
            mask=store.keep(mask, "mask.png"),
            outpaint=Padding(p.left, p.right, p.top, p.bottom),
        )
    else:
        _check_size("width", width, arch, settings)
        _check_size("height", height, arch, settings)
    if width * height > settings.max_pixels:
        raise Invalid(f"{width}x{height} is more than the {settings.max_pixels}-pixel limit", field="$.width")
    if request.init_image is not None and request.outpaint is None:
        fields["init_image"] = store.fitted(request.init_image, "$.init_image", "init.png", width, height)
        if request.mask is not None:
            mask_image = store.load(request.mask, "$.mask")
            mask, warning = inputs.prepare_mask(
                mask_image, width, height, "$.mask", blur=request.mask_blur, invert=request.invert_mask
            )
            if warning:
                store.warnings.append(warning)
            fields["mask"] = store.keep(mask, "mask.png")
    if request.init_image is not None:
        fields.update(strength=request.strength, mask_blur=request.mask_blur, invert_mask=request.invert_mask)
    plan = dict(plan)
    if request.control is not None:
        fields["control"], plan["control_net_path"] = modes.control(
            request.control, arch, catalog, store, width, height
        )
    if request.hires is not None:
        fields["hires"] = modes.hires(request.hires, arch, catalog, width, height, settings.max_side)
    if request.upscale is not None:
        fields["upscale"], plan["upscaler_path"] = modes.post_upscale(request.upscale, catalog)
    if request.ref_images:
        fields["ref_images"] = modes.reference_images(request.ref_images, arch, store)
    if request.photomaker is not None:
        fields["photomaker"], plan["photo_maker_path"] = modes.photomaker(request.photomaker, arch, catalog, store)
    if request.slg is not None:
        fields["slg"] = Slg(request.slg.scale, list(request.slg.layers), request.slg.start, request.slg.end)
    if request.cache is not None:
        fields["cache"] = Cache(request.cache.mode, request.cache.threshold)
    tae = _preview_decoder(arch, catalog, plan, options)
    preview = None
    if request.preview is not None:
        preview = Preview(request.preview.method or ("tae" if tae else "proj"), request.preview.interval)
    final = (fields["hires"].width * fields["hires"].height) if "hires" in fields else width * height
    tiling = request.vae_tiling if request.vae_tiling is not None else final > AUTO_TILING_PIXELS
    embeddings = modes.embeddings([request.prompt, request.negative_prompt], arch, catalog)
    kind = Img2Img if "init_image" in fields else Txt2Img
    return kind(
        model=ModelUse(entry.name, arch.id, plan, entry.path, embeddings, options),
        **_prompting(request, catalog, arch),
        width=width,
        height=height,
        steps=request.steps or arch.default_steps,
        cfg_scale=request.cfg_scale if request.cfg_scale is not None else arch.default_cfg,
        guidance=request.guidance,
        sampling_method=request.sampling_method or arch.default_sampler,
        scheduler=request.scheduler,
        eta=request.eta,
        batch_count=request.batch_count,
        clip_skip=request.clip_skip,
        output_format=request.output_format,
        vae=request.vae,
        taesd=request.taesd,
        preview=preview,
        vae_tiling=tiling,
        flow_shift=request.flow_shift,
        **fields,
    )


def admit_load(entry: ModelFile, catalog: Catalog, settings: Settings) -> Load:
    """A load of `entry` with the plan and options an image job of it gets (its preview TAESD included), so the job
    after it finds the model loaded rather than loading it again."""
    choose_model(catalog, entry.name, None)
    arch, plan, _, options = _plan(entry, catalog, {}, settings)
    if not arch.video:
        _preview_decoder(arch, catalog, plan, options)
    return Load(model=ModelUse(entry.name, arch.id, plan, entry.path, options=options))


def admit_upscale(
    request: UpscaleRequest, catalog: Catalog, settings: Settings, files: JobFiles, outputs: inputs.OutputResolver
) -> JobRecord:
    """A queued standalone upscale."""
    if request.model is not None:
        entry, scale = modes.upscaler(catalog, request.model, "$.model")
    else:
        found = [e for e in catalog.entries if e.role == "upscaler" and not e.broken]
        if len(found) != 1:
            have = ", ".join(e.name for e in found[:10]) or "none"
            raise Invalid(f"name an upscaler model (the library has {have})", field="$.model")
        entry, scale = found[0], int(found[0].details.get("scale", 4))
    factor = request.factor or float(scale)
    job_id = uuid.uuid4().hex
    store = modes.Inputs(job_id, files, input_limits(settings), outputs)
    try:
        image = store.load(request.image, "$.image").convert("RGB")
        width, height = round(image.width * factor), round(image.height * factor)
        if max(width, height) > settings.max_side * 4 or width * height > settings.max_pixels * 16:
            raise Invalid(f"{width}x{height} is too large an upscale for this server", field="$.factor")
        path = store.keep(image, "image.png")
    except BaseException:
        files.remove(job_id)
        raise
    model = ModelUse(entry.name, entry.architecture or "esrgan", {"upscaler_path": entry.path}, entry.path)
    spec = Upscale(
        model=model,
        image=path,
        factor=factor,
        model_scale=scale,
        tile=request.tile,
        output_format=request.output_format,
    )
    return JobRecord(id=job_id, status=QUEUED, created_at=time.time(), spec=spec)


def admit_video(
    request: VideoRequest,
    catalog: Catalog,
    settings: Settings,
    files: JobFiles,
    outputs: inputs.OutputResolver,
    loaded: dict[str, str] | None = None,
) -> JobRecord:
    """A queued video job (Wan)."""
    _check_prompts(request.prompt, request.negative_prompt, settings)
    if request.output_format == "mp4" and video.ffmpeg() is None:
        raise Invalid(
            "MP4 output needs ffmpeg on the server, which it lacks; ask for webp or frames", field="$.output_format"
        )
    if request.end_image is not None and request.init_image is None:
        raise Invalid("a last frame (end_image) needs a first frame (init_image)", field="$.end_image")
    entry = choose_model(catalog, request.model, loaded)
    arch, plan, warnings, options = _plan(entry, catalog, {}, settings)
    if not arch.video or arch.family != "wan":
        raise Invalid(f"{entry.name} is {arch.label}, which makes images, not video", field="$.model")
    width = request.width or arch.default_size
    height = request.height or arch.default_size
    _check_size("width", width, arch, settings)
    _check_size("height", height, arch, settings)
    if width * height * request.frames > settings.max_pixels * 64:
        raise Invalid(f"{request.frames} frames of {width}x{height} is over this server's limit", field="$.frames")
    prompting = _prompting(request, catalog, arch)  # before any input is stored: its LoRAs may be refused
    prompting.pop("named_loras")
    job_id = uuid.uuid4().hex
    store = modes.Inputs(job_id, files, input_limits(settings), outputs)
    fields: dict[str, Any] = {}
    try:
        if request.init_image is not None:
            fields["init_image"] = store.fitted(request.init_image, "$.init_image", "init.png", width, height)
        if request.end_image is not None:
            fields["end_image"] = store.fitted(request.end_image, "$.end_image", "end.png", width, height)
    except BaseException:
        files.remove(job_id)
        raise
    sampler = request.sampling_method or arch.default_sampler
    cfg = request.cfg_scale if request.cfg_scale is not None else arch.default_cfg
    steps = request.steps or arch.default_steps
    high = request.high_noise
    high_noise = None
    if "high_noise_diffusion_model_path" in plan:
        high_noise = HighNoise(
            steps=(high and high.steps) or steps,
            cfg_scale=high.cfg_scale if high and high.cfg_scale is not None else cfg,
            sampling_method=(high and high.sampling_method) or sampler,
            scheduler=(high and high.scheduler) or request.scheduler,
        )
    spec = Video(
        model=ModelUse(entry.name, arch.id, plan, entry.path, options=options),
        **prompting,
        width=width,
        height=height,
        frames=request.frames,
        fps=request.fps,
        steps=steps,
        cfg_scale=cfg,
        sampling_method=sampler,
        scheduler=request.scheduler,
        flow_shift=request.flow_shift,
        strength=request.strength,
        high_noise=high_noise,
        output_format=request.output_format,
        vae_tiling=request.vae_tiling,
        **fields,
    )
    store.warnings.extend(warnings)
    return JobRecord(id=job_id, status=QUEUED, created_at=time.time(), spec=spec, warnings=store.warnings)
