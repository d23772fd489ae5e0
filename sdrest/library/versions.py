"""stable-diffusion.cpp's own architecture detection (`ModelLoader::get_sd_version`, 0.4.7), ported to Python.

A diffusion model's architecture must be the one sd.cpp reaches, so this follows its rules step for step: the prefix
the file gets from how it is loaded, the tensor renames that happen before detection, then the same name and shape
tests in the same order. `tests/test_sdcpp_oracle.py` checks the expectations against the real library.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from sdrest.library.headers import Tensor


class SDVersion(enum.Enum):
    """sd.cpp's `SDVersion`; each value is the label sd.cpp logs as `Version: ...`."""

    SD1 = "SD 1.x"
    SD1_INPAINT = "SD 1.x Inpaint"
    SD1_PIX2PIX = "Instruct-Pix2Pix"
    SD1_TINY_UNET = "SD 1.x Tiny UNet"
    SD2 = "SD 2.x"
    SD2_INPAINT = "SD 2.x Inpaint"
    SD2_TINY_UNET = "SD 2.x Tiny UNet"
    SDXS_512_DS = "SDXS (512-DS)"
    SDXS_09 = "SDXS (09)"
    SDXL = "SDXL"
    SDXL_INPAINT = "SDXL Inpaint"
    SDXL_PIX2PIX = "SDXL Instruct-Pix2Pix"
    SDXL_VEGA = "SDXL (Vega)"
    SDXL_SSD1B = "SDXL (SSD1B)"
    SVD = "SVD"
    SD3 = "SD3.x"
    FLUX = "Flux"
    FLUX_FILL = "Flux Fill"
    FLUX_CONTROLS = "Flux Control"
    FLEX_2 = "Flex.2"
    CHROMA_RADIANCE = "Chroma Radiance"
    WAN2 = "Wan 2.x"
    WAN2_2_I2V = "Wan 2.2 I2V"
    WAN2_2_TI2V = "Wan 2.2 TI2V"
    QWEN_IMAGE = "Qwen Image"
    ANIMA = "Anima"
    FLUX2 = "Flux.2"
    FLUX2_KLEIN = "Flux.2 klein"
    Z_IMAGE = "Z-Image"
    OVIS_IMAGE = "Ovis Image"
    ERNIE_IMAGE = "Ernie Image"


# Prefixes sd.cpp gives each file by the argument it was passed in (stable-diffusion.cpp, new_sd_ctx).
LOAD_PREFIX = {
    "model_path": "",
    "diffusion_model_path": "model.diffusion_model.",
    "high_noise_diffusion_model_path": "model.high_noise_diffusion_model.",
}

# The top-level renames of name_conversion.cpp's convert_tensor_name. sd.cpp keeps them in an unordered map and
# stops at the first match; where two could match, the longer (more specific) prefix is the intended one.
_PREFIX_MAP = sorted(
    {
        "diffusion_model.": "model.diffusion_model.",
        "unet.": "model.diffusion_model.",
        "transformer.": "model.diffusion_model.",
        "vae.": "first_stage_model.",
        "text_encoder.": "cond_stage_model.transformer.",
        "te.": "cond_stage_model.transformer.",
        "text_encoder.2.": "cond_stage_model.1.transformer.",
        "conditioner.embedders.0.open_clip.": "cond_stage_model.",
        "conditioner.embedders.0.": "cond_stage_model.",
        "conditioner.embedders.1.": "cond_stage_model.1.",
        "te2.": "cond_stage_model.1.transformer.",
        "te1.": "cond_stage_model.transformer.",
        "te3.": "text_encoders.t5xxl.transformer.",
    }.items(),
    key=lambda item: -len(item[0]),
)

_TOKEN_EMBEDDINGS = {
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    "cond_stage_model.model.token_embedding.weight",
    "text_model.embeddings.token_embedding.weight",
    "te.text_model.embeddings.token_embedding.weight",
    "conditioner.embedders.0.model.token_embedding.weight",
    "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
}
_INPUT_BLOCKS = {
    "model.diffusion_model.input_blocks.0.0.weight",
    "model.diffusion_model.img_in.weight",
    "unet.conv_in.weight",
}


def loaded_names(tensors: Mapping[str, Tensor], load_as: str) -> dict[str, Tensor]:
    """The tensor names sd.cpp works with after loading the file as `load_as` and renaming."""
    prefix = LOAD_PREFIX[load_as]
    out: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if not name.startswith(prefix):
            name = prefix + name
        for old, new in _PREFIX_MAP:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        out[name] = tensor
    return out


def _ne(tensor: Tensor) -> list[int]:
    """ggml's dimension order: innermost first, five dimensions folded into four as sd.cpp's reader does."""
    shape = list(tensor.shape)
    if len(shape) == 5:
        shape = [shape[0] * shape[1], *shape[2:]]
    return list(reversed(shape)) + [1] * (4 - len(shape))


def sd_version(tensors: Mapping[str, Tensor], load_as: str = "model_path") -> SDVersion | None:
    """The version sd.cpp detects for a file loaded as `load_as`, or None where sd.cpp finds none."""
    return detect_version(loaded_names(tensors, load_as).items())


def detect_version(items: Iterable[tuple[str, Tensor]]) -> SDVersion | None:  # noqa: C901 - mirrors sd.cpp
    """`get_sd_version` over (name, tensor) pairs already named as sd.cpp names them."""
    token_embedding: Tensor | None = None
    input_block: Tensor | None = None
    has_multiple_encoders = is_unet = is_xl = is_flux = is_flux2 = is_wan = False
    has_single_block_47 = has_img_emb = has_middle_block_1 = has_output_block_311 = False
    has_output_block_71 = has_attn_1024 = False
    patch_embedding_channels = 0

    for name, tensor in items:
        if "model.diffusion_model.double_blocks." in name:
            is_flux = True
        if "model.diffusion_model.nerf_final_layer_conv." in name:
            return SDVersion.CHROMA_RADIANCE
        if "model.diffusion_model.joint_blocks." in name:
            return SDVersion.SD3
        if "model.diffusion_model.transformer_blocks.0.img_mod.1.weight" in name:
            return SDVersion.QWEN_IMAGE
        if "llm_adapter.blocks.0.cross_attn.q_proj.weight" in name:
            return SDVersion.ANIMA
        if "model.diffusion_model.double_stream_modulation_img.lin.weight" in name:
            is_flux2 = True
        if "single_blocks.47.linear1.weight" in name:
            has_single_block_47 = True
        if "model.diffusion_model.double_blocks.0.img_mlp.gate_proj.weight" in name:
            return SDVersion.OVIS_IMAGE
        if "model.diffusion_model.cap_embedder.0.weight" in name:
            return SDVersion.Z_IMAGE
        if "model.diffusion_model.layers.0.adaLN_sa_ln.weight" in name:
            return SDVersion.ERNIE_IMAGE
        if "model.diffusion_model.blocks.0.cross_attn.norm_k.weight" in name:
            is_wan = True
        if "model.diffusion_model.patch_embedding.weight" in name:
            patch_embedding_channels = _ne(tensor)[3]
        if "model.diffusion_model.img_emb" in name:
            has_img_emb = True
        if "model.diffusion_model.input_blocks." in name or "unet.down_blocks." in name:
            is_unet = True
            if has_multiple_encoders:
                is_xl = True
        if "conditioner.embedders.1" in name or "cond_stage_model.1" in name or "te.1" in name:
            has_multiple_encoders = True
            if is_unet:
                is_xl = True
        if "model.diffusion_model.input_blocks.8.0.time_mixer.mix_factor" in name:
            return SDVersion.SVD
        if "model.diffusion_model.middle_block.1." in name or "unet.mid_block.resnets.1." in name:
            has_middle_block_1 = True
        if (
            "model.diffusion_model.output_blocks.3.1.transformer_blocks.1" in name
            or "unet.up_blocks.1.attentions.0.transformer_blocks.1" in name
        ):
            has_output_block_311 = True
        if "model.diffusion_model.output_blocks.7.1" in name or "unet.up_blocks.2.attentions.1" in name:
            has_output_block_71 = True
            if "model.diffusion_model.output_blocks.7.1.transformer_blocks.0.attn1.to_k.weight" in name:
                if _ne(tensor)[0] == 1024:
                    has_attn_1024 = True
        if name in _TOKEN_EMBEDDINGS:
            token_embedding = tensor
        if name in _INPUT_BLOCKS:
            input_block = tensor

    if is_wan:
        if patch_embedding_channels == 184320 and not has_img_emb:
            return SDVersion.WAN2_2_I2V
        if patch_embedding_channels == 147456 and not has_img_emb:
            return SDVersion.WAN2_2_TI2V
        return SDVersion.WAN2
    input_ne = _ne(input_block) if input_block is not None else [0, 0, 0, 0]
    is_inpaint = input_ne[2] == 9
    is_ip2p = input_ne[2] == 8
    if is_xl:
        if is_inpaint:
            return SDVersion.SDXL_INPAINT
        if is_ip2p:
            return SDVersion.SDXL_PIX2PIX
        if not has_middle_block_1:
            return SDVersion.SDXL_SSD1B if has_output_block_311 else SDVersion.SDXL_VEGA
        return SDVersion.SDXL
    if is_flux and not is_flux2:
        return {384: SDVersion.FLUX_FILL, 128: SDVersion.FLUX_CONTROLS, 196: SDVersion.FLEX_2}.get(
            input_ne[0], SDVersion.FLUX
        )
    if is_flux2:
        return SDVersion.FLUX2 if has_single_block_47 else SDVersion.FLUX2_KLEIN
    width = _ne(token_embedding)[0] if token_embedding is not None else 0
    if width == 768:
        if is_inpaint:
            return SDVersion.SD1_INPAINT
        if is_ip2p:
            return SDVersion.SD1_PIX2PIX
        if not has_middle_block_1:
            return SDVersion.SD1_TINY_UNET if has_output_block_71 else SDVersion.SDXS_512_DS
        return SDVersion.SD1
    if width == 1024:
        if is_inpaint:
            return SDVersion.SD2_INPAINT
        if not has_middle_block_1:
            return SDVersion.SDXS_09 if has_attn_1024 else SDVersion.SD2_TINY_UNET
        return SDVersion.SD2
    return None
