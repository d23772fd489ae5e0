"""Loading plans: companions found by role and architecture, sidecar and request overrides, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sdrest.library.catalog import Catalog, ModelFile
from sdrest.library.plan import PlanError, make_plan
from tests.conftest import Library


def _scan(library: Library, data_dir: Path) -> tuple[Catalog, list[ModelFile]]:
    catalog = Catalog(library.root, data_dir / "library.sqlite3")
    return catalog, catalog.scan()


@pytest.fixture
def flux_library(library: Library) -> Library:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("vae-sd1-dec32", "vae/sd-vae.safetensors")  # wrong kind for Flux: must not be chosen
    return library


def test_flux_companions_found_by_role_and_architecture(flux_library: Library, data_dir: Path) -> None:
    catalog, entries = _scan(flux_library, data_dir)
    plan = make_plan(catalog.get("flux-tiny"), entries)
    root = flux_library.root
    assert plan.args == {
        "diffusion_model_path": str(root / "diffusion_models/flux-tiny.safetensors"),
        "vae_path": str(root / "vae/ae.safetensors"),
        "clip_l_path": str(root / "text_encoders/clip_l.safetensors"),
    }
    assert plan.companions == {"vae": "vae/ae.safetensors", "clip_l": "text_encoders/clip_l.safetensors"}
    assert plan.warnings == ["no t5xxl in the library; loading without it"]


def test_missing_companion_says_what_is_needed_and_found(flux_library: Library, data_dir: Path) -> None:
    (flux_library.root / "vae/ae.safetensors").unlink()
    catalog, entries = _scan(flux_library, data_dir)
    with pytest.raises(PlanError) as caught:
        make_plan(catalog.get("flux-tiny"), entries)
    assert str(caught.value) == (
        "flux-tiny (Flux.1) needs a 16-channel VAE (Flux/SD3 ae), clip_l and t5xxl; the library has clip_l"
    )


def test_full_checkpoint_needs_no_companions(library: Library, data_dir: Path) -> None:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("vae-sd1-dec32", "vae/sd-vae.safetensors")
    catalog, entries = _scan(library, data_dir)
    plan = make_plan(catalog.get("sdxs"), entries)
    assert plan.args == {"model_path": str(library.root / "checkpoints/sdxs.safetensors")}


def test_sidecar_and_request_overrides(flux_library: Library, data_dir: Path) -> None:
    flux_library.add("vae-flux-16ch", "vae/other-ae.safetensors")
    sidecar = flux_library.root / "diffusion_models/flux-tiny.json"
    sidecar.write_text(json.dumps({"vae": "other-ae", "t5xxl": None, "architecture": "kontext"}))
    catalog, entries = _scan(flux_library, data_dir)
    plan = make_plan(catalog.get("flux-tiny"), entries)
    assert plan.architecture == "kontext"
    assert plan.args["vae_path"].endswith("vae/other-ae.safetensors")
    assert "t5xxl_path" not in plan.args
    assert plan.warnings == ["loading without t5xxl, as configured"]
    with pytest.raises(PlanError, match="needs"):
        make_plan(catalog.get("flux-tiny"), entries, overrides={"clip_l": None})  # null: no text encoder at all
    plan = make_plan(catalog.get("flux-tiny"), entries, overrides={"vae": "vae/ae.safetensors", "clip_l": "clip_l"})
    assert plan.args["vae_path"].endswith("vae/ae.safetensors")
    assert plan.args["clip_l_path"].endswith("clip_l.safetensors")


def test_bad_overrides_are_named(flux_library: Library, data_dir: Path) -> None:
    catalog, entries = _scan(flux_library, data_dir)
    model = catalog.get("flux-tiny")
    with pytest.raises(PlanError, match="vae: no vae named 'clip_l'"):
        make_plan(model, entries, overrides={"vae": "clip_l"})  # a text encoder is not a VAE
    with pytest.raises(PlanError, match="unknown companion slot"):
        make_plan(model, entries, overrides={"unet": "x"})
    with pytest.raises(PlanError, match="vae: no vae named '../../etc/passwd'"):
        make_plan(model, entries, overrides={"vae": "../../etc/passwd"})
    (flux_library.root / "diffusion_models/flux-tiny.json").write_text("{oops")
    with pytest.raises(PlanError, match="sidecar flux-tiny.json is not valid JSON"):
        make_plan(model, entries)


def test_architecture_override_cannot_contradict_the_header(flux_library: Library, data_dir: Path) -> None:
    (flux_library.root / "diffusion_models/flux-tiny.json").write_text('{"architecture": "sdxl"}')
    catalog, entries = _scan(flux_library, data_dir)
    plan = make_plan(catalog.get("flux-tiny"), entries)
    assert plan.architecture == "flux"
    assert "architecture sdxl ignored: the file is Flux.1 (Flux)" in plan.warnings


def test_non_generators_and_broken_files_have_no_plan(flux_library: Library, data_dir: Path) -> None:
    flux_library.write("checkpoints/broken.safetensors", b"\0" * 16)
    catalog, entries = _scan(flux_library, data_dir)
    with pytest.raises(PlanError, match="is a vae, not a model"):
        make_plan(catalog.get("ae"), entries)
    with pytest.raises(PlanError, match="cannot be read"):
        make_plan(catalog.get("broken"), entries)
