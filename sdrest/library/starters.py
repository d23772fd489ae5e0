"""Starter models: a few well-known, ungated models with every file their loading plan needs, one command each.

Repos, file names and sizes are the hub's (sizes in bytes, as the hub lists them); each starter's files go into the
typed folder of their role. `revision` is "main": the sha256 the hub publishes at download time is what is checked.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import msgspec


class StarterFile(msgspec.Struct, frozen=True):
    """One file of a starter: where it lives on the hub, and the role (typed folder) it goes into."""

    repo_id: str
    filename: str  # path inside the repo
    revision: str
    role: str  # the typed folder's role: checkpoint, diffusion_model, vae, text_encoder, ...
    size: int  # bytes
    licence: str

    @property
    def basename(self) -> str:
        """The file's own name, as it is saved in its folder."""
        return PurePosixPath(self.filename).name


class Starter(msgspec.Struct, frozen=True):
    """A model ready to use: every file the loading plan needs."""

    name: str
    description: str
    files: tuple[StarterFile, ...]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def _file(repo_id: str, filename: str, role: str, size: int, licence: str) -> StarterFile:
    return StarterFile(repo_id, filename, "main", role, size, licence)


_APACHE = "Apache-2.0"
_STABILITY = "Stability AI Community License (free below USD 1M yearly revenue; stability.ai/license)"
_RAIL = "CreativeML Open RAIL++-M"
_WAN = "Comfy-Org/Wan_2.1_ComfyUI_repackaged"

# The fp32 single file (5.2 GB); sd.cpp can quantize it on load to run faster on a CPU.
_SD_TURBO = _file("stabilityai/sd-turbo", "sd_turbo.safetensors", "checkpoint", 5_214_561_328, _STABILITY)
_SDXL = _file(
    "stabilityai/stable-diffusion-xl-base-1.0", "sd_xl_base_1.0.safetensors", "checkpoint", 6_938_078_334, _RAIL
)
_SDXL_VAE = _file("madebyollin/sdxl-vae-fp16-fix", "sdxl_vae.safetensors", "vae", 334_641_162, "MIT")
_FLUX_SCHNELL = _file(
    "leejet/FLUX.1-schnell-gguf", "flux1-schnell-q4_0.gguf", "diffusion_model", 6_884_606_880, _APACHE
)
# Flux.1's autoencoder, from Comfy-Org's Z-Image Turbo repackage (Z-Image uses the same VAE): black-forest-labs'
# own copies sit in gated repos.
_FLUX_AE = _file("Comfy-Org/z_image_turbo", "split_files/vae/ae.safetensors", "vae", 335_304_388, _APACHE)
_CLIP_L = _file(
    "comfyanonymous/flux_text_encoders", "clip_l.safetensors", "text_encoder", 246_144_152, "MIT (OpenAI CLIP)"
)
# T5-XXL in fp8 (sd.cpp widens it on load): 4.9 GB instead of 9.8 GB in fp16.
_T5XXL = _file(
    "comfyanonymous/flux_text_encoders", "t5xxl_fp8_e4m3fn.safetensors", "text_encoder", 4_893_934_904, _APACHE
)
_WAN_T2V = _file(
    _WAN, "split_files/diffusion_models/wan2.1_t2v_1.3B_fp16.safetensors", "diffusion_model", 2_838_303_560, _APACHE
)
_WAN_VAE = _file(_WAN, "split_files/vae/wan_2.1_vae.safetensors", "vae", 253_815_318, _APACHE)
# Size from one public listing of the file (the hub rounds it to 6.04 GB).
_UMT5 = _file("city96/umt5-xxl-encoder-gguf", "umt5-xxl-encoder-Q8_0.gguf", "text_encoder", 6_043_068_256, _APACHE)

STARTERS: dict[str, Starter] = {
    s.name: s
    for s in [
        Starter(
            "sd-turbo",
            "SD-Turbo: SD 2.1 distilled to 1–4 steps at 512², the quickest start on a CPU (cfg 1, 1–4 steps).",
            (_SD_TURBO,),
        ),
        Starter(
            "sdxl",
            "SDXL 1.0 base at 1024², with the fp16-fix VAE that keeps half-precision GPUs from decoding black images.",
            (_SDXL, _SDXL_VAE),
        ),
        Starter(
            "flux-schnell",
            "FLUX.1 schnell as 4-bit GGUF, 4 steps at 1024², with its VAE, CLIP-L and T5-XXL; fits a 6–8 GB GPU.",
            (_FLUX_SCHNELL, _FLUX_AE, _CLIP_L, _T5XXL),
        ),
        Starter(
            "wan2.1-t2v-1.3b",
            "Wan 2.1 text-to-video 1.3B (832×480 clips), with its VAE and the UMT5-XXL encoder as 8-bit GGUF.",
            (_WAN_T2V, _WAN_VAE, _UMT5),
        ),
    ]
}


def starter(name: str) -> Starter:
    """The starter called `name`; KeyError names the ones there are."""
    try:
        return STARTERS[name]
    except KeyError:
        raise KeyError(f"no starter model {name!r}; there are: {', '.join(STARTERS)}") from None
