"""What each diffusion architecture is and needs: its sd.cpp version, companion files, sizes and defaults.

The companion rules follow stable-diffusion.cpp's docs (docs/*.md of the vendored source): which VAE, which text
encoders (and of which hidden size, matched against the width the diffusion model expects) and which extra encoders
each model family loads.
"""

from __future__ import annotations

import msgspec

from sdrest.library.versions import SDVersion


class Need(msgspec.Struct, frozen=True):
    """One companion file an architecture loads: the binding argument, and which files can fill it."""

    slot: str  # binding argument: vae_path, clip_l_path, clip_g_path, t5xxl_path, llm_path, clip_vision_path
    role: str
    architectures: tuple[str, ...]
    required: bool = True
    match_width: bool = False  # the encoder's hidden size must equal the model's text width


class Arch(msgspec.Struct, frozen=True):
    """A diffusion architecture as sdrest knows it."""

    id: str
    label: str
    sd_version: SDVersion
    family: str
    needs: tuple[Need, ...] = ()
    video: bool = False
    size_multiple: int = 8
    default_size: int = 512
    default_cfg: float = 7.0
    default_steps: int = 20

    @property
    def default_sampler(self) -> str:
        """sd.cpp's choice when none is given: Euler for DiT models, Euler Ancestral for UNets."""
        return "euler_a" if self.family in ("sd1", "sd2", "sdxl", "svd") else "euler"

    @property
    def any_text_encoder(self) -> bool:
        """Flux-like: CLIP-L or T5-XXL, either is enough, and one of them is needed."""
        return self.family == "flux" and self.id not in ("chroma", "chroma_radiance", "ovis_image")


_VAE_SD = Need("vae_path", "vae", ("vae_sd",))
_VAE_FLUX = Need("vae_path", "vae", ("vae_flux",))
_VAE_FLUX2 = Need("vae_path", "vae", ("vae_flux2",))
_VAE_WAN21 = Need("vae_path", "vae", ("vae_wan2_1",))
_VAE_WAN22 = Need("vae_path", "vae", ("vae_wan2_2",))
_CLIP_L = Need("clip_l_path", "text_encoder", ("clip_l",))
_CLIP_G = Need("clip_g_path", "text_encoder", ("clip_g",))
_CLIP_H = Need("clip_l_path", "text_encoder", ("clip_h",))
_T5 = Need("t5xxl_path", "text_encoder", ("t5xxl",))
_UMT5 = Need("t5xxl_path", "text_encoder", ("umt5_xxl",))
_CLIP_VISION = Need("clip_vision_path", "clip_vision", ("clip_vision_h",))


def _llm(kind: str) -> Need:
    return Need("llm_path", "text_encoder", (kind,), match_width=True)


# sd.cpp makes images in multiples of its VAE's scale times the model's down factor, and silently rounds other sizes
# up (stable-diffusion.cpp's align_image_size): 8 × 8 = 64 for UNets, 8 × 2 = 16 for Wan (32 with Wan 2.2's 16× VAE).
# DiTs align to 8; their 2×2 patches want 16.
UNET_MULTIPLE = 64


def _unet(id: str, label: str, version: SDVersion, family: str, size: int, needs: tuple[Need, ...]) -> Arch:
    return Arch(id, label, version, family, needs, size_multiple=UNET_MULTIPLE, default_size=size)


def _dit(
    id: str, label: str, version: SDVersion, family: str, needs: tuple[Need, ...], cfg: float = 1.0, steps: int = 20
) -> Arch:
    """A flow-matching transformer: 16-pixel patches of 2×2 latents, 1024² by default."""
    return Arch(
        id, label, version, family, needs, size_multiple=16, default_size=1024, default_cfg=cfg, default_steps=steps
    )


def _wan(id: str, label: str, version: SDVersion, needs: tuple[Need, ...], size: int = 480, multiple: int = 16) -> Arch:
    return Arch(id, label, version, "wan", needs, video=True, size_multiple=multiple, default_size=size,
                default_cfg=6.0, default_steps=30)  # fmt: skip


_SD1 = (_VAE_SD, _CLIP_L)
_SD2 = (_VAE_SD, _CLIP_H)
_SDXL = (_VAE_SD, _CLIP_L, _CLIP_G)
# Flux runs with CLIP-L or T5-XXL alone (never with neither: sd.cpp then crashes), so neither is required on its own.
_FLUX = (
    _VAE_FLUX,
    Need("clip_l_path", "text_encoder", ("clip_l",), False),
    Need("t5xxl_path", "text_encoder", ("t5xxl",), False),
)
_SD3 = (_VAE_FLUX, _CLIP_L, _CLIP_G, Need("t5xxl_path", "text_encoder", ("t5xxl",), required=False))
_WAN21 = (_VAE_WAN21, _UMT5)
_WAN21_I2V = (_VAE_WAN21, _UMT5, _CLIP_VISION)
_QWEN = (_VAE_WAN21, _llm("qwen2_5_vl"))

ARCHITECTURES: dict[str, Arch] = {
    a.id: a
    for a in [
        _unet("sd1", "SD 1.x", SDVersion.SD1, "sd1", 512, _SD1),
        _unet("sd1_inpaint", "SD 1.x Inpaint", SDVersion.SD1_INPAINT, "sd1", 512, _SD1),
        _unet("sd1_pix2pix", "SD 1.x Instruct-Pix2Pix", SDVersion.SD1_PIX2PIX, "sd1", 512, _SD1),
        _unet("sd1_tiny_unet", "SD 1.x Tiny UNet", SDVersion.SD1_TINY_UNET, "sd1", 512, _SD1),
        _unet("sdxs_512_ds", "SDXS 512 DreamShaper", SDVersion.SDXS_512_DS, "sd1", 512, _SD1),
        _unet("sd2", "SD 2.x", SDVersion.SD2, "sd2", 768, _SD2),
        _unet("sd2_inpaint", "SD 2.x Inpaint", SDVersion.SD2_INPAINT, "sd2", 512, _SD2),
        _unet("sd2_tiny_unet", "SD 2.x Tiny UNet", SDVersion.SD2_TINY_UNET, "sd2", 512, _SD2),
        _unet("sdxs_09", "SDXS 0.9", SDVersion.SDXS_09, "sd2", 512, _SD2),
        _unet("sdxl", "SDXL", SDVersion.SDXL, "sdxl", 1024, _SDXL),
        _unet("sdxl_inpaint", "SDXL Inpaint", SDVersion.SDXL_INPAINT, "sdxl", 1024, _SDXL),
        _unet("sdxl_pix2pix", "SDXL Instruct-Pix2Pix", SDVersion.SDXL_PIX2PIX, "sdxl", 1024, _SDXL),
        _unet("sdxl_vega", "SDXL Vega", SDVersion.SDXL_VEGA, "sdxl", 1024, _SDXL),
        _unet("sdxl_ssd1b", "SDXL SSD-1B", SDVersion.SDXL_SSD1B, "sdxl", 1024, _SDXL),
        Arch(
            "svd",
            "Stable Video Diffusion",
            SDVersion.SVD,
            "svd",
            (_VAE_SD,),
            video=True,
            size_multiple=UNET_MULTIPLE,
            default_size=576,
        ),  # fmt: skip
        _dit("sd3", "SD 3.x", SDVersion.SD3, "sd3", _SD3, cfg=4.5, steps=28),
        _dit("flux", "Flux.1", SDVersion.FLUX, "flux", _FLUX),
        _dit("kontext", "Flux.1 Kontext", SDVersion.FLUX, "flux", _FLUX),
        _dit("flux_fill", "Flux.1 Fill", SDVersion.FLUX_FILL, "flux", _FLUX),
        _dit("flux_controls", "Flux.1 Control", SDVersion.FLUX_CONTROLS, "flux", _FLUX),
        _dit("flex_2", "Flex.2", SDVersion.FLEX_2, "flux", _FLUX),
        _dit("chroma", "Chroma", SDVersion.FLUX, "flux", (_VAE_FLUX, _T5), cfg=4.0, steps=26),
        _dit("chroma_radiance", "Chroma Radiance", SDVersion.CHROMA_RADIANCE, "flux", (_T5,), cfg=4.0, steps=26),
        _dit("ovis_image", "Ovis-Image", SDVersion.OVIS_IMAGE, "flux", (_VAE_FLUX, _llm("qwen3")), cfg=5.0),
        _wan("wan2_1_t2v", "Wan 2.1 T2V", SDVersion.WAN2, _WAN21),
        _wan("wan2_1_i2v", "Wan 2.1 I2V", SDVersion.WAN2, _WAN21_I2V),
        _wan("wan2_1_flf2v", "Wan 2.1 FLF2V", SDVersion.WAN2, _WAN21_I2V),
        _wan("wan2_1_vace", "Wan 2.1 VACE", SDVersion.WAN2, _WAN21),
        _wan("wan2_2_t2v", "Wan 2.2 T2V A14B", SDVersion.WAN2, _WAN21),
        _wan("wan2_2_i2v", "Wan 2.2 I2V A14B", SDVersion.WAN2_2_I2V, _WAN21),
        _wan("wan2_2_ti2v", "Wan 2.2 TI2V 5B", SDVersion.WAN2_2_TI2V, (_VAE_WAN22, _UMT5), size=704, multiple=32),
        _dit("qwen_image", "Qwen-Image", SDVersion.QWEN_IMAGE, "qwen_image", _QWEN, cfg=2.5),
        _dit("qwen_image_edit", "Qwen-Image-Edit", SDVersion.QWEN_IMAGE, "qwen_image", _QWEN, cfg=2.5),
        _dit("anima", "Anima", SDVersion.ANIMA, "anima", (_VAE_WAN21, _llm("qwen3")), cfg=6.0),
        _dit("flux2", "Flux.2", SDVersion.FLUX2, "flux2", (_VAE_FLUX2, _llm("mistral"))),
        _dit("flux2_klein", "Flux.2 klein", SDVersion.FLUX2_KLEIN, "flux2", (_VAE_FLUX2, _llm("qwen3")), steps=4),
        _dit("z_image", "Z-Image", SDVersion.Z_IMAGE, "z_image", (_VAE_FLUX, _llm("qwen3")), steps=8),
        _dit(
            "ernie_image", "ERNIE-Image", SDVersion.ERNIE_IMAGE, "ernie_image", (_VAE_FLUX2, _llm("mistral")), cfg=5.0
        ),
    ]
}

# The architecture each sd.cpp version means when nothing more specific is known.
BY_VERSION: dict[SDVersion, str] = {}
for _arch in ARCHITECTURES.values():
    BY_VERSION.setdefault(_arch.sd_version, _arch.id)

ROLES = (
    "checkpoint",
    "diffusion_model",
    "vae",
    "taesd",
    "text_encoder",
    "clip_vision",
    "lora",
    "controlnet",
    "upscaler",
    "embedding",
    "photomaker",
    "unknown",
)


# LoRA targets each model family accepts (a LoRA for another family crashes sd.cpp or does nothing).
LORA_FAMILIES = {"sd1": "sd1", "sd2": "sd2", "sdxl": "sdxl", "sd3": "sd3", "flux": "flux", "wan": "wan",
                 "qwen_image": "qwen_image", "z_image": "z_image"}  # fmt: skip
# Distilled UNets keep SD's layer names for blocks of other shapes, so a full-size LoRA makes sd.cpp abort mid-job
# (measured on SD 1.x Tiny UNet and SDXS-512; the SD 2.x ones are built the same way).
NO_FULL_SIZE_LORAS = ("sd1_tiny_unet", "sdxs_512_ds", "sd2_tiny_unet", "sdxs_09")


def lora_refusal(arch: Arch, target: str) -> str | None:
    """Why a LoRA made for `target` models cannot apply to `arch`, or None when it can (or nobody knows)."""
    family = LORA_FAMILIES.get(arch.family)
    if target != "unknown" and family is not None and target != family:
        return f"is for {target} models; {arch.label} is {family}"
    if arch.id in NO_FULL_SIZE_LORAS and target == family:
        return (
            f"cannot apply: sd.cpp cannot apply {target} LoRAs to {arch.label}: its layers have other shapes and the "
            "engine would abort"
        )
    return None
