"""The typed folders of a model library, and the other layouts users already have (ComfyUI, AUTOMATIC1111).

A folder names the role its files are expected to have; detection from the header still decides. Scans walk every
folder recursively, so files in subfolders (`checkpoints/sdxl/…`) and in folders this table does not know are found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from sdrest.library.headers import MODEL_SUFFIXES

# sdrest's own folders, in the order `sdrest models` creates them; with the role each holds (None: not models).
FOLDERS: dict[str, str | None] = {
    "checkpoints": "checkpoint",
    "diffusion_models": "diffusion_model",
    "vae": "vae",
    "taesd": "taesd",
    "text_encoders": "text_encoder",
    "clip_vision": "clip_vision",
    "lora": "lora",
    "embeddings": "embedding",
    "controlnet": "controlnet",
    "esrgan": "upscaler",
    "upscaler": "upscaler",
    "photomaker": "photomaker",
    "presets": None,
    "prompts": None,
    "neg_prompts": None,
}

# Other tools' names for the same folders (compared case-insensitively).
ALIASES: dict[str, str] = {
    # ComfyUI
    "unet": "diffusion_model",
    "clip": "text_encoder",
    "loras": "lora",
    "upscale_models": "upscaler",
    "vae_approx": "taesd",
    # AUTOMATIC1111 / Forge
    "stable-diffusion": "checkpoint",
    "stable_diffusion": "checkpoint",
    "lycoris": "lora",
    "vae-approx": "taesd",
    "realesrgan": "upscaler",
    "swinir": "upscaler",
    "textual_inversion": "embedding",
    "upscalers": "upscaler",
}


def folder_for_role(role: str) -> str:
    """sdrest's own folder for files of `role` (`checkpoints` for a checkpoint, `esrgan` for an upscaler)."""
    return next((folder for folder, held in FOLDERS.items() if held == role), "checkpoints")


def folder_role(relative: Path) -> str | None:
    """The role a file's top-level folder suggests, e.g. `loras/x/y.safetensors` → lora."""
    if len(relative.parts) < 2:
        return None
    top = relative.parts[0].lower()
    for name, role in FOLDERS.items():
        if top == name:
            return role
    return ALIASES.get(top)


def library_roots(models_dir: Path) -> list[Path]:
    """The directories to scan. An AUTOMATIC1111 install root holds its models in `models/` and its embeddings
    beside it; pointed at such a root (or its `models/`), both are scanned."""
    if (models_dir / "models" / "Stable-diffusion").is_dir():
        roots = [models_dir / "models"]
        if (models_dir / "embeddings").is_dir():
            roots.append(models_dir / "embeddings")
        return roots
    roots = [models_dir]
    if (models_dir / "Stable-diffusion").is_dir() and (models_dir.parent / "embeddings").is_dir():
        roots.append(models_dir.parent / "embeddings")
    return roots


def iter_model_files(models_dir: Path) -> Iterator[tuple[Path, Path]]:
    """(absolute path, path relative to its root) of every model file in the library, sorted, skipping hidden
    entries and the files a conversion is still writing."""
    for index, root in enumerate(library_roots(models_dir)):
        if not root.is_dir():
            continue
        # Files of an extra root (A1111's embeddings/) are named as if that root were a folder of the library.
        prefix = Path(root.name) if index else Path()
        found: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if not name.startswith(".") and name.lower().endswith(MODEL_SUFFIXES):
                    found.append(Path(dirpath) / name)
        for path in sorted(found):
            yield path, prefix / path.relative_to(root)


def create_folders(models_dir: Path) -> None:
    """Create sdrest's typed folders (missing ones only)."""
    for name in FOLDERS:
        (models_dir / name).mkdir(parents=True, exist_ok=True)
