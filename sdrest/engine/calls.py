"""Turn a job spec into the binding's calls: the one place that knows both.

Runs in the worker, but imports nothing native, so tests check the exact arguments each kind hands the binding.
"""

from __future__ import annotations

from typing import Any

from sdrest.specs import EngineSpec, Img2Img, LoraUse, Txt2Img, Upscale, Video


def _prompt(clean: str, loras: list[LoraUse]) -> str:
    # LoRAs travel as absolute paths in sd.cpp's prompt syntax: the library resolved them, the wrapper reads them.
    return clean + "".join(f"<lora:{lora.path}:{lora.weight}>" for lora in loras)


def load_options(spec: EngineSpec) -> dict[str, Any]:
    """Constructor options a spec needs beyond its plan (part of the loaded context's identity)."""
    options: dict[str, Any] = dict(spec.model.options)
    if spec.model.embeddings:
        options["embedding_paths"] = list(spec.model.embeddings)
    if isinstance(spec, Upscale):
        options["upscale_tile_size"] = spec.tile
    return options


def _sampling(spec: Txt2Img | Video) -> dict[str, Any]:
    """The keywords images and videos share: prompts, size, guidance scale, steps, sampler, seed."""
    kwargs: dict[str, Any] = {
        "prompt": _prompt(spec.clean_prompt, spec.loras),
        "negative_prompt": spec.negative_prompt,
        "width": spec.width,
        "height": spec.height,
        "cfg_scale": spec.cfg_scale,
        "sample_steps": spec.steps,
        "sample_method": spec.sampling_method,
        "scheduler": spec.scheduler or "default",
        "seed": spec.seed,
    }
    if spec.flow_shift is not None:
        kwargs["flow_shift"] = spec.flow_shift
    if spec.vae_tiling:
        kwargs["vae_tiling"] = True
    return kwargs


def generate_image_kwargs(spec: Txt2Img) -> dict[str, Any]:
    """`StableDiffusion.generate_image` keywords for an image spec (txt2img, img2img, inpainting, outpainting)."""
    kwargs = {
        **_sampling(spec),
        "guidance": spec.guidance,
        "batch_count": spec.batch_count,
        "clip_skip": spec.clip_skip,
    }
    if spec.eta is not None:
        kwargs["eta"] = spec.eta
    if spec.control is not None:
        kwargs.update(
            control_image=spec.control.image, control_strength=spec.control.strength, canny=spec.control.canny
        )
    if spec.hires is not None:
        h = spec.hires
        kwargs.update(
            hires=True,
            hires_upscaler=h.upscaler,
            hires_width=h.width,
            hires_height=h.height,
            hires_steps=h.steps,
            hires_denoising_strength=h.denoising_strength,
        )
        if h.model_path:
            kwargs["hires_path"] = h.model_path
    if spec.ref_images:
        kwargs["ref_images"] = list(spec.ref_images)
    if spec.photomaker is not None:
        kwargs.update(pm_id_images=list(spec.photomaker.id_images), pm_style_strength=spec.photomaker.style_strength)
    if spec.slg is not None:
        kwargs.update(
            slg_scale=spec.slg.scale,
            skip_layers=list(spec.slg.layers),
            skip_layer_start=spec.slg.start,
            skip_layer_end=spec.slg.end,
        )
    if spec.cache is not None:
        kwargs["cache_mode"] = spec.cache.mode
        if spec.cache.threshold is not None:
            kwargs["cache_reuse_threshold"] = spec.cache.threshold
    if isinstance(spec, Img2Img):
        kwargs.update(init_image=spec.init_image, strength=spec.strength)
        if spec.mask is not None:
            kwargs["mask_image"] = spec.mask
    return kwargs


def generate_video_kwargs(spec: Video) -> dict[str, Any]:
    """`StableDiffusion.generate_video` keywords for a video spec."""
    kwargs = {**_sampling(spec), "video_frames": spec.frames, "strength": spec.strength}
    if spec.init_image is not None:
        kwargs["init_image"] = spec.init_image
    if spec.end_image is not None:
        kwargs["end_image"] = spec.end_image
    if spec.high_noise is not None:
        kwargs.update(
            high_noise_sample_steps=spec.high_noise.steps,
            high_noise_cfg_scale=spec.high_noise.cfg_scale,
            high_noise_sample_method=spec.high_noise.sampling_method,
            high_noise_scheduler=spec.high_noise.scheduler or "default",
        )
    return kwargs


def upscale_passes(model_scale: int, factor: float) -> int:
    """How many runs of an upscaler of `model_scale` reach `factor` (the result is then resized to it exactly)."""
    passes, reached = 1, model_scale
    while reached < factor:
        passes, reached = passes + 1, reached * model_scale
    return passes
