"""Decide a model file's role and architecture from its header.

The header decides; the folder a file sits in and its name are hints. Names settle only what the tensors cannot
(Kontext vs Flux.1 dev, Qwen-Image-Edit vs Qwen-Image, Wan 2.2 vs 2.1 T2V, high vs low noise). For diffusion models
the architecture is sd.cpp's own answer (`versions.py`), refined where sd.cpp refines it later (Chroma, Wan variants).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from sdrest.library.architectures import BY_VERSION
from sdrest.library.headers import Header, Tensor
from sdrest.library.versions import SDVersion, detect_version, loaded_names, sd_version


class Detection(msgspec.Struct, omit_defaults=True):
    """What a file is. `architecture` is a lower-case id (README lists them); `details` holds facts such as a
    VAE's latent channels, an upscaler's scale or the text width a diffusion model expects."""

    role: str
    architecture: str | None = None
    sd_version: str | None = None
    load_as: str | None = None
    details: dict[str, Any] = {}
    warnings: list[str] = []


_CHECKPOINT_PARTS = (
    "first_stage_model.",
    "cond_stage_model.",
    "conditioner.embedders.",
    "text_encoders.",
    "vae.",
    "te.",
)
_DIFFUSION_MARKERS = (
    "input_blocks.",
    "down_blocks.",
    "double_blocks.",
    "joint_blocks.",
    "nerf_final_layer_conv.",
    "llm_adapter.",
    "cap_embedder.",
    "adaLN_sa_ln",
    "double_stream_modulation_img",
)
_LORA_MARKERS = (
    ".lora_down",
    ".lora_up",
    ".lora_A.",
    ".lora_B.",
    "lora.down",
    "lora.up",
    ".hada_w1",
    ".lokr_w1",
    ".diff_b",
)
# Text input layers (Linear, input width second): Flux/Flux.2/Qwen-Image/Ovis, Z-Image, ERNIE-Image, Anima.
_TEXT_INPUTS = (
    "model.diffusion_model.txt_in.weight",
    "cap_embedder.1.weight",
    "model.diffusion_model.text_proj.weight",
    "llm_adapter.blocks.0.cross_attn.k_proj.weight",
)


def detect(header: Header, *, filename: str = "", folder_role: str | None = None) -> Detection:
    """Role and architecture of a file whose header is `header`; `folder_role` is the role its folder suggests."""
    names = header.tensors
    hint = _name_hint(filename)
    found = (
        _gguf_text_encoder(header)
        or _photomaker(names)  # before LoRAs: PhotoMaker files carry LoRA weights for the UNet
        or _lora(names)
        or _controlnet(names)
        or _upscaler(names)
        or _embedding(names)
        or _diffusion(names, hint)
        or _unsupported(names)
        or _taesd(names)
        or _vae(names)
        or _text_encoder(names)
        or _clip_vision(names)
        or Detection("unknown")
    )
    if header.format == "gguf":
        found.details["quantization"] = _dominant_type(names)
    if folder_role and found.role != "unknown" and not _folder_agrees(folder_role, found.role):
        found.warnings.append(f"in a {folder_role} folder, but the header says it is a {found.role}")
    if found.role == "unknown":
        found.warnings.append("no known model layout in this file's tensors")
    return found


def _folder_agrees(folder_role: str, role: str) -> bool:
    # Full checkpoints and diffusion models sit in each other's folders all the time (ComfyUI's unet/ vs checkpoints/).
    models = {"checkpoint", "diffusion_model"}
    return folder_role == role or (folder_role in models and role in models)


def _name_hint(filename: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", filename.lower())


def _any(names: Mapping[str, Tensor], *subs: str) -> bool:
    return any(sub in name for name in names for sub in subs)


def _find(names: Mapping[str, Tensor], suffix: str) -> Tensor | None:
    for name, tensor in names.items():
        if name.endswith(suffix):
            return tensor
    return None


def _dominant_type(names: Mapping[str, Tensor]) -> str:
    counts: dict[str, int] = {}
    for tensor in names.values():
        if len(tensor.shape) >= 2:
            counts[tensor.dtype] = counts.get(tensor.dtype, 0) + 1
    return max(counts, key=lambda k: counts[k]).lower() if counts else "unknown"


# -- diffusion models -------------------------------------------------------------------------------------------------


def _diffusion(names: Mapping[str, Tensor], hint: str) -> Detection | None:
    if not _any(names, *_DIFFUSION_MARKERS, "blocks.0.cross_attn.norm_k", "transformer_blocks.0.img_mod"):
        return None
    is_checkpoint = any(name.startswith(_CHECKPOINT_PARTS) for name in names) and _any(
        names, "model.diffusion_model.", "unet."
    )
    load_as = "model_path" if is_checkpoint else "diffusion_model_path"
    version = sd_version(names, load_as)
    loaded = loaded_names(names, load_as)
    details: dict[str, Any] = {}
    if version is None and not is_checkpoint:
        # A UNet alone: sd.cpp 0.4.7 cannot load it (it picks the text encoders' prefix before it knows the model is a
        # UNet, then detects nothing), but what it is still matters to the user.
        unet = _bare_unet_version(loaded, details)
        if unet is None:
            return None
        details["unet_only"] = True
        arch = BY_VERSION[unet]
        return Detection("diffusion_model", arch, None, "diffusion_model_path", details)
    if version is None:
        return None
    arch = _refine(version, loaded, hint, details)
    if is_checkpoint:
        details["contains"] = _components(names)
    width = _text_width(loaded)
    if width:
        details["text_width"] = width
    if version in (SDVersion.WAN2, SDVersion.WAN2_2_I2V) and (" high noise" in f" {hint}" or "highnoise" in hint):
        details["noise_level"] = "high"
    elif version in (SDVersion.WAN2, SDVersion.WAN2_2_I2V) and (" low noise" in f" {hint}" or "lownoise" in hint):
        details["noise_level"] = "low"
    role = "checkpoint" if is_checkpoint else "diffusion_model"
    return Detection(role, arch, version.value, load_as, details)


_REFINER = (
    "an SDXL refiner, which sd.cpp cannot load (its only text encoder is OpenCLIP-G, and sd.cpp's SDXL needs CLIP-L "
    "too); generate with an SDXL base model instead"
)
_FLUX_DIFFUSERS = (
    "a Flux.1 transformer in diffusers naming (transformer_blocks / single_transformer_blocks), which sd.cpp 0.4.7 "
    "cannot load as a single file; use the original-format file (e.g. flux1-dev.safetensors) or a GGUF of it"
)


def _unsupported(names: Mapping[str, Tensor]) -> Detection | None:
    """Models sd.cpp refuses that would otherwise pass for something else (the refiner's VAE makes it look like a
    VAE): listed for what they are, with the reason, and never loaded."""
    unet = _any(names, "model.diffusion_model.input_blocks.")
    if unet and _any(names, "conditioner.embedders.0.model.") and not _any(names, ".transformer.text_model."):
        return Detection("checkpoint", details={"unsupported": "sdxl_refiner"}, warnings=[_REFINER])
    if "x_embedder.weight" in names and _any(names, "single_transformer_blocks.0."):
        return Detection("diffusion_model", details={"unsupported": "flux_diffusers"}, warnings=[_FLUX_DIFFUSERS])
    return None


def _bare_unet_version(loaded: Mapping[str, Tensor], details: dict[str, Any]) -> SDVersion | None:
    """What a UNet without text encoders would be with them: the CLIP widths follow from its cross-attention width."""
    to_k = next(
        (
            tensor
            for suffix in (
                "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",  # SDXL: no attention in the first level
                "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight",
            )
            if (tensor := _find(loaded, suffix)) is not None
        ),
        None,
    )
    if to_k is None or len(to_k.shape) != 2:
        return None
    context = to_k.shape[1]
    details["context_dim"] = context
    companions: dict[str, Tensor] = {}
    token = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
    if context == 2048:  # SDXL: CLIP-L + CLIP-G
        companions[token] = Tensor("F16", (49408, 768))
        companions["cond_stage_model.1.transformer.text_model.embeddings.token_embedding.weight"] = Tensor(
            "F16", (49408, 1280)
        )
    elif context in (768, 1024):
        companions[token] = Tensor("F16", (49408, context))
    else:
        return None
    # Diffusers names become sd.cpp's own when it loads them; the tests below only need the UNet's outline.
    renamed = {
        n.replace("model.diffusion_model.down_blocks.", "unet.down_blocks.")
        .replace("model.diffusion_model.mid_block.", "unet.mid_block.")
        .replace("model.diffusion_model.up_blocks.", "unet.up_blocks.")
        .replace("model.diffusion_model.conv_in.", "unet.conv_in."): t
        for n, t in loaded.items()
    }
    return detect_version([*renamed.items(), *companions.items()])


def _refine(version: SDVersion, loaded: Mapping[str, Tensor], hint: str, details: dict[str, Any]) -> str:
    arch = BY_VERSION[version]
    if version == SDVersion.FLUX:
        if _any(loaded, "distilled_guidance_layer."):
            return "chroma"
        if "kontext" in hint:
            return "kontext"
    if version == SDVersion.QWEN_IMAGE and "edit" in hint:
        return "qwen_image_edit"
    if version == SDVersion.WAN2:
        if _any(loaded, "vace_blocks."):
            return "wan2_1_vace"
        if _any(loaded, "img_emb.emb_pos"):
            return "wan2_1_flf2v"
        if _any(loaded, "img_emb."):
            return "wan2_1_i2v"
        if re.search(r"wan ?2 ?2|wan22", hint):
            return "wan2_2_t2v"
        return "wan2_1_t2v"
    return arch


def _text_width(loaded: Mapping[str, Tensor]) -> int | None:
    """The hidden size of the text encoder the model was trained with, read off its text input layer."""
    for suffix in _TEXT_INPUTS:
        tensor = _find(loaded, suffix)
        if tensor is not None and len(tensor.shape) == 2:
            width = tensor.shape[1]
            # Flux.2 feeds three stacked hidden layers of its LLM into the text input.
            if "model.diffusion_model.double_stream_modulation_img.lin.weight" in loaded and suffix.endswith(
                "txt_in.weight"
            ):
                width //= 3
            return width
    return None


def _components(names: Mapping[str, Tensor]) -> list[str]:
    """Which parts a full checkpoint carries, so companions are asked for only where missing."""
    parts = ["diffusion_model"]
    if any(n.startswith(("first_stage_model.", "vae.")) for n in names):
        parts.append("vae")
    if any(
        n.startswith(("cond_stage_model.", "conditioner.embedders.0.", "te.", "text_encoders.clip_l.")) for n in names
    ):
        parts.append("clip_l")
    if any(
        n.startswith(("conditioner.embedders.1.", "cond_stage_model.1.", "text_encoders.clip_g.", "te.1."))
        for n in names
    ):
        parts.append("clip_g")
    if any(n.startswith("text_encoders.t5xxl.") for n in names):
        parts.append("t5xxl")
    return parts


# -- other roles ------------------------------------------------------------------------------------------------------


def _lora(names: Mapping[str, Tensor]) -> Detection | None:
    if not _any(names, *_LORA_MARKERS):
        return None
    joined = " ".join(names)
    target = "unknown"
    if "double_blocks" in joined or "single_blocks" in joined or "single_transformer_blocks" in joined:
        target = "flux"
    elif "joint_blocks" in joined:
        target = "sd3"
    elif "img_mod" in joined or "txt_mlp" in joined:
        target = "qwen_image"
    elif re.search(r"blocks[._]\d+[._](cross_attn|self_attn)", joined):
        target = "wan"
    elif re.search(r"layers[._]\d+[._](attention|adaLN)", joined):
        target = "z_image"
    elif "lora_te1_" in joined or "lora_te2_" in joined or "te2." in joined or _lora_context(names) == 2048:
        target = "sdxl"
    elif _lora_context(names) == 1024:
        target = "sd2"
    elif "lora_unet_" in joined or "lora_te_" in joined or _lora_context(names) == 768:
        target = "sd1"
    kind = "lycoris" if _any(names, ".hada_w1", ".lokr_w1") else "lora"
    return Detection("lora", f"lora_{target}", details={"target": target, "kind": kind})


def _lora_context(names: Mapping[str, Tensor]) -> int | None:
    """The cross-attention context width a UNet LoRA was trained against (768 SD1, 1024 SD2, 2048 SDXL)."""
    for name, tensor in names.items():
        if re.search(r"attn2[._]to_k.*(lora_down|lora_A|lora\.down)", name) and len(tensor.shape) >= 2:
            return tensor.shape[1]
    return None


def _controlnet(names: Mapping[str, Tensor]) -> Detection | None:
    if not _any(names, "input_hint_block.", "controlnet_cond_embedding.") or not _any(
        names, "zero_convs.", "controlnet_down_blocks."
    ):
        return None
    target = "sd1"
    if _any(names, "label_emb.", "add_embedding."):
        target = "sdxl"
    else:
        to_k = _find(names, "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight")
        if to_k is not None and to_k.shape[-1] == 1024:
            target = "sd2"
    return Detection("controlnet", f"controlnet_{target}", details={"target": target})


def _upscaler(names: Mapping[str, Tensor]) -> Detection | None:
    if "model.0.weight" in names and _any(names, "model.1.sub."):
        # sd.cpp's ESRGAN loader: the old key layout's scale follows from the highest `model.N` index.
        top = max((int(m.group(1)) for n in names if (m := re.match(r"model\.(\d+)\.", n))), default=0)
        scale = 1 if top <= 4 else 2 if top <= 7 else 4
    elif "conv_first.weight" in names and _any(names, "body."):
        scale = 4 if "conv_up2.weight" in names else 2 if "conv_up1.weight" in names else 1
    else:
        return None
    blocks = {m.group(1) for n in names if (m := re.match(r"(?:body|model\.1\.sub)\.(\d+)\.(?:rdb|RDB)", n))}
    return Detection("upscaler", "esrgan", details={"scale": scale, "blocks": len(blocks)})


def _photomaker(names: Mapping[str, Tensor]) -> Detection | None:
    if _any(names, "qformer_perceiver."):
        return Detection("photomaker", "photomaker_v2")
    if _any(names, "pmid.", "fuse_module.", "visual_projection_2"):
        return Detection("photomaker", "photomaker_v1")
    return None


def _embedding(names: Mapping[str, Tensor]) -> Detection | None:
    if len(names) > 4:
        return None
    if "clip_g" in names and "clip_l" in names:
        return Detection("embedding", "embedding_sdxl", details={"vectors": names["clip_l"].shape[0]})
    tensor = names.get("emb_params") or next((t for n, t in names.items() if n.startswith("string_to_param.")), None)
    if tensor is None or not tensor.shape:
        return None
    width = tensor.shape[-1]
    target = {768: "sd1", 1024: "sd2"}.get(width, "unknown")
    return Detection(
        "embedding", f"embedding_{target}", details={"vectors": tensor.shape[0] if len(tensor.shape) > 1 else 1}
    )


def _taesd(names: Mapping[str, Tensor]) -> Detection | None:
    first = names.get("decoder.layers.0.weight") or names.get("decoder.1.weight")
    if first is None or len(first.shape) != 4:
        return None
    channels = first.shape[1]
    arch = {4: "taesd", 16: "taef1", 32: "taef2"}.get(channels, "taesd")
    if "decoder.1.weight" in names and "decoder.layers.0.weight" not in names:
        arch = "taew2_1" if channels == 16 else "taew2_2"
    return Detection("taesd", arch, details={"latent_channels": channels})


def _vae(names: Mapping[str, Tensor]) -> Detection | None:
    stripped = {n.removeprefix("first_stage_model.").removeprefix("vae."): t for n, t in names.items()}
    conv_in = stripped.get("decoder.conv_in.weight")
    if conv_in is not None and len(conv_in.shape) == 4:
        channels = conv_in.shape[1]
        arch = {4: "vae_sd", 16: "vae_flux", 32: "vae_flux2"}.get(channels, "vae_sd")
        return Detection("vae", arch, details={"latent_channels": channels})
    conv1 = stripped.get("decoder.conv1.weight")
    if conv1 is not None and len(conv1.shape) == 5:  # Wan's causal 3-D VAE
        channels = conv1.shape[1]
        arch = "vae_wan2_2" if channels == 48 else "vae_wan2_1"
        return Detection("vae", arch, details={"latent_channels": channels})
    return None


def _text_encoder(names: Mapping[str, Tensor]) -> Detection | None:
    token = _find(names, "text_model.embeddings.token_embedding.weight") or names.get("token_embedding.weight")
    if token is not None and not _any(names, "vision_model."):
        width = token.shape[-1]
        arch = {768: "clip_l", 1280: "clip_g", 1024: "clip_h"}.get(width, "clip_l")
        return Detection("text_encoder", arch, details={"hidden_size": width})
    shared = names.get("shared.weight") or names.get("encoder.embed_tokens.weight")
    if _any(names, "encoder.block.0.layer.0.SelfAttention.") and shared is not None:
        return _t5(shared.shape[0], shared.shape[1])
    embed = _find(names, "embed_tokens.weight")
    if embed is not None and _any(names, "layers.0.self_attn.q_proj"):
        return _llm(names, embed, vision=_any(names, "visual."))
    return None


def _t5(vocab: int, width: int) -> Detection:
    arch = "umt5_xxl" if vocab > 200_000 else "t5xxl"
    return Detection("text_encoder", arch, details={"hidden_size": width, "vocab_size": vocab})


def _llm(names: Mapping[str, Tensor], embed: Tensor, vision: bool, gguf_arch: str = "") -> Detection:
    vocab, width = embed.shape[0], embed.shape[-1]
    if "qwen3" in gguf_arch or _any(names, "self_attn.q_norm", "attn_q_norm"):
        arch = "qwen3"
    elif "qwen2" in gguf_arch or _any(names, "self_attn.q_proj.bias", "attn_q.bias"):
        arch = "qwen2_5_vl"
    elif vocab == 131072 or "mistral" in gguf_arch:
        arch = "mistral"
    else:
        arch = "llm"
    layers = {m.group(1) for n in names if (m := re.search(r"(?:layers|blk)\.(\d+)\.", n))}
    details: dict[str, Any] = {"hidden_size": width, "vocab_size": vocab, "layers": len(layers)}
    if vision:
        details["vision"] = True
    return Detection("text_encoder", arch, details=details)


def _gguf_text_encoder(header: Header) -> Detection | None:
    """llama.cpp-style GGUF encoders (`blk.N.attn_q`, `token_embd`), named by `general.architecture`, and the vision
    projectors (mmproj) that go with them."""
    if header.format != "gguf":
        return None
    gguf_arch = header.metadata.get("general.architecture", "").lower()
    if gguf_arch == "clip" and _any(header.tensors, "v.blk."):
        projector = header.metadata.get("clip.projector_type", "")
        arch = "qwen2_5_vl" if projector.startswith("qwen2.5vl") or projector.startswith("qwen25vl") else "llm"
        width = int(header.metadata.get("clip.vision.embedding_length", 0) or 0)
        return Detection("text_encoder", arch, details={"vision": True, "mmproj": True, "hidden_size": width})
    if "token_embd.weight" not in header.tensors:
        return None
    embed = header.tensors["token_embd.weight"]
    if "t5" in gguf_arch or _any(header.tensors, "enc.blk."):
        return _t5(embed.shape[0], embed.shape[-1])
    return _llm(header.tensors, embed, vision=False, gguf_arch=gguf_arch)


def _clip_vision(names: Mapping[str, Tensor]) -> Detection | None:
    patch = _find(names, "vision_model.embeddings.patch_embedding.weight") or names.get("visual.conv1.weight")
    if patch is None:
        return None
    width = patch.shape[0]
    arch = {1280: "clip_vision_h", 1024: "clip_vision_l", 1664: "clip_vision_g"}.get(width, "clip_vision")
    return Detection("clip_vision", arch, details={"hidden_size": width})
