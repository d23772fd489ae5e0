"""AUTOMATIC1111's `parameters` text for a job's outputs: what each mode added, as A1111 writes it."""

from __future__ import annotations

from pathlib import Path

from sdrest import __version__, images
from sdrest.library.architectures import ARCHITECTURES
from sdrest.specs import Img2Img, JobSpec, Txt2Img, Upscale, Video

HIRES_LABELS = {
    "latent": "Latent",
    "latent_nearest": "Latent (nearest)",
    "latent_nearest_exact": "Latent (nearest-exact)",
    "latent_antialiased": "Latent (antialiased)",
    "latent_bicubic": "Latent (bicubic)",
    "latent_bicubic_antialiased": "Latent (bicubic antialiased)",
    "lanczos": "Lanczos",
    "nearest": "Nearest",
}


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(round(value, 4))


def _stem(name: str) -> str:
    return Path(name).stem


def for_image(spec: JobSpec, index: int, model_hash: str | None) -> str:
    """The infotext of output `index` of a job."""
    version = {"Version": f"sdrest {__version__}"}
    if isinstance(spec, Upscale):
        return ", ".join(
            f"{k}: {v}"
            for k, v in {
                "Postprocess upscale by": _number(spec.factor),
                "Postprocess upscaler": _stem(spec.model.name),
                **version,
            }.items()
        )
    if isinstance(spec, Video):
        info = images.Infotext(
            prompt=spec.prompt, negative_prompt=spec.negative_prompt, steps=spec.steps, sampler=spec.sampling_method,
            scheduler=spec.scheduler, cfg_scale=spec.cfg_scale, seed=spec.seed, width=spec.width, height=spec.height,
            model_name=_stem(spec.model.name), model_hash=model_hash,
            extra={"Frames": str(spec.frames), "FPS": str(spec.fps), **version},
        )  # fmt: skip
        return images.format_infotext(info)
    assert isinstance(spec, Txt2Img)
    arch = ARCHITECTURES.get(spec.model.architecture)
    extra: dict[str, str] = {}
    denoising: float | None = None
    if isinstance(spec, Img2Img):
        denoising = spec.strength
        if spec.mask is not None:
            extra["Mask blur"] = str(spec.mask_blur)
        if spec.invert_mask:
            extra["Mask mode"] = "Inpaint not masked"
        if spec.outpaint is not None:
            p = spec.outpaint
            extra["Outpaint"] = f"left {p.left}, right {p.right}, top {p.top}, bottom {p.bottom}"
    if spec.hires is not None:
        h = spec.hires
        denoising = h.denoising_strength
        extra["Hires upscale"] = _number(h.scale)
        if h.steps:
            extra["Hires steps"] = str(h.steps)
        extra["Hires upscaler"] = HIRES_LABELS.get(h.upscaler, _stem(h.model or h.upscaler))
    if spec.control is not None:
        c = spec.control
        module = "canny" if c.canny else "none"
        extra["ControlNet 0"] = f"Module: {module}, Model: {_stem(c.model)}, Weight: {_number(c.strength)}"
    if spec.upscale is not None:
        extra["Postprocess upscale by"] = _number(spec.upscale.factor)
        extra["Postprocess upscaler"] = _stem(spec.upscale.model)
    if spec.vae:
        extra["VAE"] = Path(spec.vae).name
    if spec.taesd:
        extra["TAESD"] = Path(spec.taesd).name
    if spec.model.embeddings:
        extra["TI"] = ", ".join(Path(p).stem for p in spec.model.embeddings)
    if spec.ref_images:
        extra["Reference images"] = str(len(spec.ref_images))
    info = images.Infotext(
        prompt=spec.prompt,
        negative_prompt=spec.negative_prompt,
        steps=spec.steps,
        sampler=spec.sampling_method,
        scheduler=spec.scheduler,
        guidance=spec.guidance if arch is not None and arch.family in ("flux", "flux2") else None,
        cfg_scale=spec.cfg_scale,
        seed=spec.seed + index,
        width=spec.hires.width if spec.hires else spec.width,
        height=spec.hires.height if spec.hires else spec.height,
        model_name=_stem(spec.model.name),
        model_hash=model_hash,
        clip_skip=spec.clip_skip if spec.clip_skip > 0 else None,
        denoising_strength=denoising,
        loras=list(spec.named_loras),
        extra={**extra, **version},
    )
    return images.format_infotext(info)
