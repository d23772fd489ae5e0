"""Loading plans: the exact binding arguments for a model, its companion files chosen from the library.

Precedence for each companion slot: the request's override > a preset > the model's sidecar (`<model>.json` or
`<model file>.json` next to it) > the library's best match for the architecture's needs. A slot set to null (or "")
means "load nothing there". When a required companion is missing the error names what is needed and what was found.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec

from sdrest.library.architectures import ARCHITECTURES, Arch, Need
from sdrest.library.catalog import ModelFile

# Companion slots: the key used in sidecars, presets and requests, and the binding argument it fills.
SLOTS: dict[str, str] = {
    "vae": "vae_path",
    "taesd": "taesd_path",
    "clip_l": "clip_l_path",
    "clip_g": "clip_g_path",
    "t5xxl": "t5xxl_path",
    "llm": "llm_path",
    "llm_vision": "llm_vision_path",
    "clip_vision": "clip_vision_path",
    "high_noise_diffusion_model": "high_noise_diffusion_model_path",
    "control_net": "control_net_path",
    "upscaler": "upscaler_path",
    "photo_maker": "photo_maker_path",
}
_SLOT_ROLES: dict[str, tuple[str, ...]] = {
    "vae": ("vae",),
    "taesd": ("taesd",),
    "clip_l": ("text_encoder",),
    "clip_g": ("text_encoder",),
    "t5xxl": ("text_encoder",),
    "llm": ("text_encoder",),
    "llm_vision": ("text_encoder", "clip_vision"),
    "clip_vision": ("clip_vision",),
    "high_noise_diffusion_model": ("diffusion_model",),
    "control_net": ("controlnet",),
    "upscaler": ("upscaler",),
    "photo_maker": ("photomaker",),
}
_BY_ARG = {arg: key for key, arg in SLOTS.items()}
# Which companion slot a component embedded in a full checkpoint fills.
_EMBEDDED = {"vae": "vae_path", "clip_l": "clip_l_path", "clip_g": "clip_g_path", "t5xxl": "t5xxl_path"}
_VAE_LABELS = {
    "vae_sd": "an SD VAE (4 channels)",
    "vae_flux": "a 16-channel VAE (Flux/SD3 ae)",
    "vae_flux2": "a Flux.2 VAE (32 channels)",
    "vae_wan2_1": "a Wan 2.1 / Qwen-Image VAE",
    "vae_wan2_2": "a Wan 2.2 VAE (48 channels)",
}


class PlanError(ValueError):
    """The model cannot be loaded as asked; the message says what is missing or wrong, and `slot` names the companion
    slot at fault (`vae`, `taesd`, ...) when one is."""

    def __init__(self, message: str, slot: str | None = None) -> None:
        super().__init__(message)
        self.slot = slot


class Plan(msgspec.Struct):
    """How to load a model: binding arguments (absolute paths) and, for people, the library names behind them;
    `engine` holds the load options its sidecar sets (validated by the caller)."""

    model: str
    architecture: str
    args: dict[str, str]
    companions: dict[str, str] = {}
    warnings: list[str] = []
    engine: dict[str, Any] = {}


def sidecar(entry: ModelFile) -> dict[str, Any]:
    """The settings file next to a model (`x.json` or `x.safetensors.json`), or {}."""
    path = Path(entry.path)
    for candidate in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
                raise PlanError(f"the sidecar {candidate.name} is not valid JSON: {e}") from e
            if not isinstance(data, dict):
                raise PlanError(f"the sidecar {candidate.name} must hold a JSON object")
            return data
    return {}


def make_plan(
    entry: ModelFile,
    library: Sequence[ModelFile],
    overrides: Mapping[str, str | None] | None = None,
    preset: Mapping[str, Any] | None = None,
) -> Plan:
    """The loading plan for `entry`, choosing companions from `library`."""
    if entry.broken:
        raise PlanError(f"{entry.name} cannot be read: {entry.error}")
    if entry.role not in ("checkpoint", "diffusion_model"):
        raise PlanError(f"{entry.name} is a {entry.role}, not a model that generates images")
    if entry.details.get("unsupported"):
        raise PlanError(f"{entry.name} is " + "; ".join(entry.warnings))
    if entry.details.get("unet_only"):
        raise PlanError(
            f"{entry.name} is a bare {entry.architecture} UNet, which sd.cpp 0.4.7 cannot load (it does not recognise "
            "a UNet without its text encoders); use the full checkpoint"
        )
    side = sidecar(entry)
    settings: dict[str, Any] = {**side, **(preset or {}), **(overrides or {})}
    unknown = sorted(k for k in settings if k not in SLOTS and k not in ("architecture", "model", "params", "engine"))
    if unknown:
        raise PlanError(f"unknown companion slot(s) {', '.join(unknown)}; known: {', '.join(SLOTS)}")
    warnings = list(entry.warnings)
    arch = _architecture(entry, settings.get("architecture"), warnings)
    load_as = entry.load_as or "model_path"
    engine = side.get("engine") or {}
    if not isinstance(engine, dict):
        raise PlanError(f"the sidecar of {entry.name}: engine must be an object of load options")
    plan = Plan(entry.name, arch.id, {load_as: entry.path}, warnings=warnings, engine=engine)
    named = {k: v for k, v in settings.items() if k in SLOTS}
    for key, value in named.items():
        if value:
            companion = _lookup(library, str(value), _SLOT_ROLES[key], key)
            plan.args[SLOTS[key]] = companion.path
            plan.companions[key] = companion.name
    embedded = {_EMBEDDED[part] for part in entry.details.get("contains", []) if part in _EMBEDDED}
    missing: list[Need] = []
    found: list[Need] = []
    needs = [n for n in arch.needs if n.slot not in embedded]  # what a checkpoint carries needs no companion
    for need in needs:
        key = _BY_ARG[need.slot]
        if key in named:
            # Set by the caller: a file counts as found; null means "without it", searched for no further.
            (found if named[key] else missing).append(need)
            continue
        pick = _best(entry, library, need)
        if pick is None:
            missing.append(need)
        else:
            plan.args[need.slot] = pick.path
            plan.companions[key] = pick.name
            found.append(need)
    _check_missing(entry, arch, needs, missing, found, plan, named)
    _pair_noise_levels(entry, library, plan, named)
    return plan


def _architecture(entry: ModelFile, wanted: Any, warnings: list[str]) -> Arch:
    arch = ARCHITECTURES.get(entry.architecture or "")
    if arch is None:
        raise PlanError(f"{entry.name}: sd.cpp does not recognise this model's architecture")
    if wanted and wanted != arch.id:
        other = ARCHITECTURES.get(str(wanted))
        if other is None:
            raise PlanError(f"unknown architecture {wanted!r} in the settings for {entry.name}")
        if other.sd_version != arch.sd_version:
            # The header decides: a sidecar may only choose between models sd.cpp cannot tell apart.
            warnings.append(f"architecture {other.id} ignored: the file is {arch.label} ({arch.sd_version.value})")
        else:
            return other
    return arch


def _lookup(library: Sequence[ModelFile], name: str, roles: tuple[str, ...], key: str) -> ModelFile:
    hits = [
        e
        for e in library
        if e.role in roles and not e.broken and name in (e.name, Path(e.name).name, e.stem, e.name.rsplit(".", 1)[0])
    ]
    if not hits:
        raise PlanError(f"{key}: no {'/'.join(roles)} named {name!r} in the library", slot=key)
    if len({h.path for h in hits}) > 1:
        raise PlanError(f"{key}: {name!r} is ambiguous: {', '.join(sorted(h.name for h in hits))}", slot=key)
    return hits[0]


def _tokens(name: str) -> set[str]:
    """The words of a file name that tell models apart ("qwen", "image", "wan", "klein"), not numbers or versions."""
    return set(re.findall(r"[a-z]{3,}", Path(name).stem.lower())) - {"safetensors", "gguf", "fp16", "bf16", "fp8"}


def _best(entry: ModelFile, library: Sequence[ModelFile], need: Need) -> ModelFile | None:
    width = entry.details.get("text_width")
    candidates = [
        e
        for e in library
        if e.role == need.role
        and not e.broken
        and e.architecture in need.architectures
        and not e.details.get("mmproj")  # a vision projector only ever fills llm_vision, named explicitly
        and (not need.match_width or not width or e.details.get("hidden_size") == width)
    ]
    if not candidates:
        return None
    # Prefer the companion whose name shares most words with the model or its architecture (qwen_image_vae for
    # Qwen-Image, wan_2.1_vae for Wan), then the one in the nearest folder, then by name, so the choice is stable.
    mine = _tokens(entry.name) | _tokens(entry.architecture or "")
    home = Path(entry.name).parent
    return min(candidates, key=lambda e: (-len(mine & _tokens(e.name)), Path(e.name).parent != home, e.name))


def _label(entry: ModelFile, need: Need) -> str:
    kind = need.architectures[0]
    if need.role == "vae":
        return _VAE_LABELS.get(kind, kind)
    width = entry.details.get("text_width")
    if need.match_width and width:
        return f"{kind} (hidden size {width})"
    return kind


def _check_missing(
    entry: ModelFile,
    arch: Arch,
    needs: list[Need],
    missing: list[Need],
    found: list[Need],
    plan: Plan,
    named: Mapping[str, Any],
) -> None:
    if not missing:
        return
    text_slots = {"clip_l_path", "t5xxl_path"}
    blocking = [n for n in missing if n.required]
    if arch.any_text_encoder and not any(n.slot in text_slots for n in found):
        blocking += [n for n in missing if n.slot in text_slots]
    if blocking:
        wanted = [_label(entry, n) for n in needs if n.required or arch.any_text_encoder]
        have = _join([_label(entry, n) for n in found]) or "none of them"
        raise PlanError(f"{entry.stem} ({arch.label}) needs {_join(wanted)}; the library has {have}")
    for need in missing:
        if _BY_ARG[need.slot] in named:
            plan.warnings.append(f"loading without {_label(entry, need)}, as configured")
        else:
            plan.warnings.append(f"no {_label(entry, need)} in the library; loading without it")


def _pair_noise_levels(entry: ModelFile, library: Sequence[ModelFile], plan: Plan, named: Mapping[str, Any]) -> None:
    """Wan 2.2 A14B comes as a low-noise and a high-noise model that run as one; find the other half."""
    level = entry.details.get("noise_level")
    if not level or "high_noise_diffusion_model" in named:
        return
    other = "low" if level == "high" else "high"
    twins = [
        e
        for e in library
        if e.role == "diffusion_model"
        and not e.broken
        and e.architecture == entry.architecture
        and e.details.get("noise_level") == other
    ]
    if not twins:
        plan.warnings.append(
            f"no {other}-noise {entry.architecture} model in the library; running the {level}-noise one alone"
        )
        return
    mine = _tokens(entry.name)
    twin = min(twins, key=lambda e: (-len(mine & _tokens(e.name)), e.name))
    low, high = (entry, twin) if level == "low" else (twin, entry)
    plan.args["diffusion_model_path"] = low.path
    plan.args["high_noise_diffusion_model_path"] = high.path
    plan.companions["high_noise_diffusion_model"] = high.name


def _join(items: Sequence[str]) -> str:
    items = list(dict.fromkeys(items))
    return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else "".join(items)
