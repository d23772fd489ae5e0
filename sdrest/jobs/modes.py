"""What each generation mode adds at admission: input images stored beside the job, library models resolved for
ControlNet, hires fix, upscalers, PhotoMaker and embeddings, and the refusals for what the chosen model cannot do.

Each function resolves one part of a request into spec fields, or raises `Invalid` naming the field.
"""

from __future__ import annotations

import re

from PIL import Image

from sdrest import inputs
from sdrest.jobs.errors import Invalid
from sdrest.jobs.files import JobFiles
from sdrest.library.architectures import Arch
from sdrest.library.catalog import Catalog, ModelFile, UnknownModel
from sdrest.schemas import ControlRequest, HiresRequest, PhotoMakerRequest, UpscaleAfter
from sdrest.specs import Control, Hires, PhotoMaker, PostUpscale

# Models that read reference images (sd.cpp's ref_images): Flux Kontext, Qwen-Image-Edit, Flux.2 (and klein).
REF_IMAGE_ARCHITECTURES = ("kontext", "qwen_image_edit", "flux2", "flux2_klein")
# Families whose ControlNets sd.cpp loads.
CONTROL_FAMILIES = ("sd1", "sd2", "sdxl")


class Inputs:
    """Loads a job's input images and keeps them beside the job (`inputs/` in its folder) as PNG."""

    def __init__(self, job_id: str, files: JobFiles, limits: inputs.Limits, outputs: inputs.OutputResolver) -> None:
        self.job_id, self.files, self.limits, self.outputs = job_id, files, limits, outputs
        self.warnings: list[str] = []

    def load(self, value: inputs.ImageInput, field: str) -> Image.Image:
        try:
            return inputs.load_image(value, field, self.limits, self.outputs)
        except inputs.InputError as e:
            raise Invalid(str(e), field=e.field) from e

    def keep(self, image: Image.Image, name: str) -> str:
        """Store an input; returns the path the worker reads."""
        return str(self.files.save_input(self.job_id, name, inputs.png_bytes(image)))

    def fitted(self, value: inputs.ImageInput, field: str, name: str, width: int, height: int) -> str:
        """An input resized to the request's size (with a warning when it was not), stored."""
        image, warning = inputs.fit(self.load(value, field).convert("RGB"), width, height, field)
        if warning:
            self.warnings.append(warning)
        return self.keep(image, name)


def library_file(catalog: Catalog, name: str, role: str, field: str) -> ModelFile:
    """A readable library file of `role`, or a 422 that says what the name is instead."""
    try:
        entry = catalog.get(name, roles=(role,))
    except UnknownModel:
        try:
            other = catalog.get(name)
        except UnknownModel as e:
            raise Invalid(f"no {role} named {name!r} in the library ({e})", field=field) from None
        raise Invalid(f"{other.name} is a {other.role}, not a {role}", field=field) from None
    if entry.broken:
        raise Invalid(f"{entry.name} cannot be read: {entry.error}", field=field)
    return entry


def control(
    request: ControlRequest, arch: Arch, catalog: Catalog, files: Inputs, width: int, height: int
) -> tuple[Control, str]:
    """The ControlNet part and its file's path (a loading-plan argument)."""
    entry = library_file(catalog, request.model, "controlnet", "$.control.model")
    target = entry.details.get("target", "unknown")
    if arch.family not in CONTROL_FAMILIES or target != arch.family:
        raise Invalid(
            f"the ControlNet {entry.name} is for {target} models; {arch.label} cannot use it"
            + ("" if arch.family in CONTROL_FAMILIES else " (sd.cpp has ControlNets for SD 1.x, 2.x and SDXL only)"),
            field="$.control.model",
        )
    image = files.fitted(request.image, "$.control.image", "control.png", width, height)
    return Control(entry.name, image, request.strength, request.preprocess == "canny"), entry.path


def upscaler(catalog: Catalog, name: str, field: str) -> tuple[ModelFile, int]:
    entry = library_file(catalog, name, "upscaler", field)
    return entry, int(entry.details.get("scale", 4))


def hires(request: HiresRequest, arch: Arch, catalog: Catalog, width: int, height: int, max_side: int) -> Hires:
    if request.scale is not None and (request.width or request.height):
        raise Invalid("give hires.scale or hires.width/height, not both", field="$.hires.scale")
    if request.width or request.height:
        final_w = request.width or round(width * (request.height or height) / height)
        final_h = request.height or round(height * final_w / width)
        scale = final_w / width
    else:
        scale = request.scale or 2.0
        final_w, final_h = round(width * scale), round(height * scale)
    m = arch.size_multiple
    final_w, final_h = final_w // m * m, final_h // m * m
    if final_w <= width and final_h <= height:
        raise Invalid(f"the hires size {final_w}x{final_h} is not larger than {width}x{height}", field="$.hires")
    if max(final_w, final_h) > max_side:
        raise Invalid(f"the hires size {final_w}x{final_h} is over the {max_side}-pixel limit", field="$.hires")
    name = request.upscaler
    if name.lower() in _LATENT_MODES:
        return Hires(final_w, final_h, round(scale, 4), name.lower(), request.steps, request.denoising_strength)
    entry, _ = upscaler(catalog, name, "$.hires.upscaler")
    return Hires(
        final_w, final_h, round(scale, 4), "model", request.steps, request.denoising_strength, entry.name, entry.path
    )


_LATENT_MODES = ("latent", "latent_nearest", "latent_nearest_exact", "latent_antialiased", "latent_bicubic",
                 "latent_bicubic_antialiased", "lanczos", "nearest")  # fmt: skip


def post_upscale(request: UpscaleAfter, catalog: Catalog) -> tuple[PostUpscale, str]:
    entry, scale = upscaler(catalog, request.model, "$.upscale.model")
    return PostUpscale(entry.name, request.factor or float(scale), scale), entry.path


def photomaker(request: PhotoMakerRequest, arch: Arch, catalog: Catalog, files: Inputs) -> tuple[PhotoMaker, str]:
    if arch.family != "sdxl":
        raise Invalid(f"PhotoMaker works with SDXL models; {arch.label} is not one", field="$.photomaker")
    models = [e for e in catalog.entries if e.role == "photomaker" and not e.broken]
    if not models:
        raise Invalid("PhotoMaker needs a PhotoMaker file in the library's photomaker/ folder", field="$.photomaker")
    paths = [
        files.keep(files.load(image, f"$.photomaker.id_images[{i}]").convert("RGB"), f"id-{i}.png")
        for i, image in enumerate(request.id_images)
    ]
    return PhotoMaker(paths, request.style_strength), models[0].path


def reference_images(values: list[inputs.ImageInput], arch: Arch, files: Inputs) -> list[str]:
    if arch.id not in REF_IMAGE_ARCHITECTURES:
        raise Invalid(
            f"{arch.label} ignores reference images; they work with Flux Kontext, Qwen-Image-Edit and Flux.2",
            field="$.ref_images",
        )
    return [
        files.keep(files.load(v, f"$.ref_images[{i}]").convert("RGB"), f"ref-{i}.png") for i, v in enumerate(values)
    ]


_WORD = re.compile(r"[\w.-]+")


def embeddings(texts: list[str], arch: Arch, catalog: Catalog) -> list[str]:
    """The library's embeddings named in the prompts (by file stem, as A1111 matches them) that fit the model."""
    words = {w for text in texts for w in _WORD.findall(text)}
    if not words:
        return []
    wanted = f"embedding_{arch.family}"
    return sorted(
        e.path
        for e in catalog.entries
        if e.role == "embedding" and not e.broken and e.architecture == wanted and e.stem in words
    )
