"""Turn a job spec into the binding's keyword arguments: the one place that knows both.

Runs in the worker, but imports nothing native, so tests check the exact arguments each kind hands the binding.
"""

from __future__ import annotations

from typing import Any

from sdrest.specs import JobSpec, Txt2Img


def generate_image_kwargs(spec: JobSpec) -> dict[str, Any]:
    """`StableDiffusion.generate_image` keywords for `spec`."""
    match spec:
        case Txt2Img():
            # LoRAs travel as absolute paths in sd.cpp's prompt syntax: the library resolved them, the wrapper reads
            # them.
            prompt = spec.clean_prompt + "".join(f"<lora:{lora.path}:{lora.weight}>" for lora in spec.loras)
            kwargs: dict[str, Any] = {
                "prompt": prompt,
                "negative_prompt": spec.negative_prompt,
                "width": spec.width,
                "height": spec.height,
                "cfg_scale": spec.cfg_scale,
                "guidance": spec.guidance,
                "sample_steps": spec.steps,
                "seed": spec.seed,
                "batch_count": spec.batch_count,
                "clip_skip": spec.clip_skip,
                "sample_method": spec.sampling_method,
                "scheduler": spec.scheduler or "default",
            }
            if spec.eta is not None:
                kwargs["eta"] = spec.eta
            return kwargs
    raise TypeError(f"no binding call for {type(spec).__name__}")
