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
    """The model a job runs: its library name and architecture, and how it loads (binding arguments)."""

    name: str
    architecture: str
    plan: dict[str, str]
    path: str  # the main file, whose hash the infotext records


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


JobSpec = Txt2Img  # the union of every kind; each new kind is added here: `Txt2Img | Img2Img | ...`


def public_params(spec: JobSpec) -> dict[str, Any]:
    """The parameters as the API shows them: what the client asked for, every default filled in."""
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
    return params
