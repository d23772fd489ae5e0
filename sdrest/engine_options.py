"""The binding's load options (flash attention, offloading, keeping encoders on the CPU, mmap, weight types, …):
validated once, merged from three levels — server settings < the model's sidecar < the request — and made part of
the loaded context's identity, so two plans that differ in options never share a loaded model.

Measured effects are in README ("Engine options"): some are traps on some hardware (conv-direct 2–11× slower on
CUDA, flash attention 1.7× slower on CPU), so none is turned on by default without a measurement behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

WTYPES = ("f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k", "q3_k", "q2_k")
RNG = ("std_default", "cuda", "cpu")
PREDICTION = ("eps", "v", "edm_v", "sd3_flow", "flux_flow", "flux2_flow")


class EngineOptions(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Load options of the binding; None leaves the binding's default."""

    flash_attn: bool | None = None
    diffusion_flash_attn: bool | None = None
    offload_params_to_cpu: bool | None = None
    keep_clip_on_cpu: bool | None = None
    keep_vae_on_cpu: bool | None = None
    keep_control_net_on_cpu: bool | None = None
    enable_mmap: bool | None = None
    vae_conv_direct: bool | None = None
    diffusion_conv_direct: bool | None = None
    wtype: Literal[WTYPES] | None = None  # type: ignore[valid-type]
    tensor_type_rules: Annotated[str, Meta(max_length=1000)] | None = None
    rng_type: Literal[RNG] | None = None  # type: ignore[valid-type]
    sampler_rng_type: Literal[RNG] | None = None  # type: ignore[valid-type]
    prediction: Literal[PREDICTION] | None = None  # type: ignore[valid-type]
    max_vram: Annotated[float, Meta(ge=0, le=4096)] | None = None  # GiB; only with offload_params_to_cpu


class OptionsError(ValueError):
    """Engine options that are not valid; the message names the option and where it came from."""


def parse(data: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """The options in `data` as binding keywords (only the ones set), or OptionsError naming `source`."""
    if not data:
        return {}
    try:
        options = msgspec.convert(dict(data), EngineOptions)
    except msgspec.ValidationError as e:
        raise OptionsError(f"{source}: {e}") from None
    return {k: v for k, v in msgspec.structs.asdict(options).items() if v is not None}


def merge(*levels: Mapping[str, Any]) -> dict[str, Any]:
    """Later levels win: server settings, then the model's sidecar, then the request."""
    merged: dict[str, Any] = {}
    for level in levels:
        merged.update(level)
    return merged
