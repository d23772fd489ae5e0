"""Detection over header-only files of every architecture and role: the answers are sd.cpp's own
(tests/test_sdcpp_oracle.py checks the expectations against the real library), and plans find the right companions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sdrest.library.catalog import Catalog, ModelFile
from sdrest.library.detect import detect
from sdrest.library.folders import FOLDERS
from sdrest.library.headers import read_header
from sdrest.library.plan import PlanError, make_plan
from tests.fixtures import synthetic

# Facts both the fixture catalogue and the detector report under the same key.
SHARED_DETAILS = ("scale", "blocks", "latent_channels", "target", "quantization")


@pytest.mark.parametrize("case", synthetic.CASES, ids=lambda c: c.name)
def test_detects_role_architecture_and_sdcpp_version(case: synthetic.SyntheticCase) -> None:
    found = detect(read_header(synthetic.build(case)), filename=case.filename, folder_role=FOLDERS.get(case.folder))
    assert (found.role, found.architecture, found.sd_version) == (case.role, case.architecture, case.sd_version)
    assert found.warnings == []
    for key in SHARED_DETAILS:
        if key in case.details and key in found.details:
            assert found.details[key] == case.details[key], key
    if case.load_as is not None:
        assert found.load_as == case.load_as


def test_header_beats_folder(tmp_path: Path) -> None:
    case = synthetic.get_case("flux-ae")
    found = detect(read_header(synthetic.build(case)), filename="model.safetensors", folder_role="lora")
    assert (found.role, found.architecture) == ("vae", "vae_flux")
    assert found.warnings == ["in a lora folder, but the header says it is a vae"]


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, list[ModelFile]]:
    """A library holding every synthetic file in the folder a user would choose."""
    root = tmp_path_factory.mktemp("all") / "models"
    for case in synthetic.CASES:
        target = root / case.folder / case.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(synthetic.build(case), target)
    catalog = Catalog(root, root.parent / "library.sqlite3")
    return catalog, catalog.scan()


def _plan(everything: tuple[Catalog, list[ModelFile]], name: str) -> dict[str, str]:
    catalog, entries = everything
    return make_plan(catalog.get(name), entries).companions


def test_companions_by_architecture_and_text_width(everything: tuple[Catalog, list[ModelFile]]) -> None:
    flux = _plan(everything, "flux1-dev")
    assert flux["vae"] == "vae/ae.safetensors" and flux["clip_l"] == "text_encoders/clip_l.safetensors"
    assert "t5" in flux["t5xxl"] and "umt5" not in flux["t5xxl"]
    assert _plan(everything, "chroma-unlocked-v50").keys() == {"vae", "t5xxl"}
    assert _plan(everything, "Chroma1-Radiance-v0.4").keys() == {"t5xxl"}  # pixel space: no VAE
    # LLM encoders are matched by the hidden size the model's text input expects.
    assert _plan(everything, "qwen_image_bf16") == {
        "vae": "vae/qwen_image_vae.safetensors",
        "llm": "text_encoders/Qwen2.5-VL-7B-Instruct-Q8_0.gguf",
    }
    assert "Qwen3-4B" in _plan(everything, "z_image_turbo_bf16")["llm"]
    assert "Qwen3-4B" in _plan(everything, "flux-2-klein-4b")["llm"]
    assert _plan(everything, "flux-2-klein-9b")["llm"] == "text_encoders/qwen_3_8b.safetensors"
    assert _plan(everything, "flux2-dev")["llm"] == "text_encoders/mistral_3_small_flux2_bf16.safetensors"
    assert _plan(everything, "ernie-image-turbo") == {
        "vae": "vae/flux2-vae.safetensors",
        "llm": "text_encoders/ministral-3-3b.safetensors",
    }
    assert _plan(everything, "anima-preview")["llm"] == "text_encoders/qwen_3_06b_base.safetensors"
    # Wan: its own VAE rather than Qwen-Image's (same layout), UMT5, and CLIP vision for image-to-video.
    assert _plan(everything, "wan2.1_t2v_1.3B_fp16") == {
        "vae": "vae/wan_2.1_vae.safetensors",
        "t5xxl": "text_encoders/umt5-xxl-encoder-Q8_0.gguf",
    }
    assert _plan(everything, "wan2.1_i2v_480p_14B_fp16")["clip_vision"] == "clip_vision/clip_vision_h.safetensors"
    assert _plan(everything, "wan2.2_ti2v_5B_fp16")["vae"] == "vae/wan2.2_vae.safetensors"
    # Full checkpoints carry what they carry; SD3.5 Large brings its VAE but not its text encoders.
    assert _plan(everything, "sd_xl_base_1.0") == {}
    assert _plan(everything, "sd3.5_large").keys() == {"clip_l", "clip_g", "t5xxl"}
    assert _plan(everything, "sd3_medium_incl_clips").keys() == {"t5xxl"}


def test_models_without_a_fitting_encoder_or_unloadable_say_why(everything: tuple[Catalog, list[ModelFile]]) -> None:
    catalog, entries = everything
    with pytest.raises(PlanError, match=r"needs .* qwen3 \(hidden size 2048\); the library has a 16-channel VAE"):
        make_plan(catalog.get("ovis_image_bf16"), entries)
    with pytest.raises(PlanError, match="bare sdxl UNet, which sd.cpp 0.4.7 cannot load"):
        make_plan(catalog.get("sdxl_base_1.0_unet_fp16"), entries)


def test_wan22_halves_are_paired(everything: tuple[Catalog, list[ModelFile]], tmp_path: Path) -> None:
    catalog, _ = everything
    high = catalog.get("wan2.2_t2v_high_noise_14B_fp16")
    low_path = tmp_path / "wan2.2_t2v_low_noise_14B_fp16.safetensors"
    os.link(high.path, low_path)
    root = Path(high.path).parents[1]
    (root / "diffusion_models" / low_path.name).hardlink_to(low_path)
    try:
        entries = catalog.scan()
        plan = make_plan(catalog.get("wan2.2_t2v_high_noise_14B_fp16"), entries)
        assert plan.args["diffusion_model_path"].endswith("low_noise_14B_fp16.safetensors")
        assert plan.args["high_noise_diffusion_model_path"].endswith("high_noise_14B_fp16.safetensors")
    finally:
        (root / "diffusion_models" / low_path.name).unlink()
        catalog.scan()


@pytest.mark.parametrize(
    ("name", "role", "said"),
    [
        ("sdxl-refiner", "checkpoint", "an SDXL refiner, which sd.cpp cannot load"),
        ("flux1-dev-diffusers", "diffusion_model", "a Flux.1 transformer in diffusers naming"),
    ],
)
def test_models_sdcpp_refuses_are_named_and_explained(name: str, role: str, said: str, tmp_path: Path) -> None:
    path = synthetic.build_unsupported(name)
    found = detect(read_header(path), filename=path.name, folder_role=FOLDERS.get(path.parent.name))
    assert (found.role, found.architecture) == (role, None)
    assert len(found.warnings) == 1 and found.warnings[0].startswith(said)
    entry = ModelFile(path.name, str(path), 1, 1, found.role, details=found.details, warnings=found.warnings)
    with pytest.raises(PlanError, match=said):
        make_plan(entry, [entry])
