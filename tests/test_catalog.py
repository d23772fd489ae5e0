"""The library scan: detection of real fixture files, typed and foreign folder layouts, broken files, the cache."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from sdrest.library.catalog import Catalog, UnknownModel
from tests.conftest import Library


def _catalog(library: Library, data_dir: Path) -> Catalog:
    return Catalog(library.root, data_dir / "library.sqlite3")


def test_real_fixtures_are_detected(library: Library, data_dir: Path) -> None:
    library.add("sd1-full", "checkpoints/sd15.safetensors")
    library.add("sd1-sdxs", "checkpoints/sub/sdxs.safetensors")
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.add("taesd", "taesd/taesd.safetensors")
    library.add("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.add("controlnet-sd1", "controlnet/canny.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/x4.safetensors")
    library.add("vae-sd1-dec32", "vae/sd-vae.safetensors")
    found = {e.name: (e.role, e.architecture) for e in _catalog(library, data_dir).scan()}
    assert found == {
        "checkpoints/sd15.safetensors": ("checkpoint", "sd1"),
        "checkpoints/sub/sdxs.safetensors": ("checkpoint", "sdxs_512_ds"),
        "diffusion_models/flux-tiny.safetensors": ("diffusion_model", "flux"),
        "vae/ae.safetensors": ("vae", "vae_flux"),
        "vae/sd-vae.safetensors": ("vae", "vae_sd"),
        "text_encoders/clip_l.safetensors": ("text_encoder", "clip_l"),
        "taesd/taesd.safetensors": ("taesd", "taesd"),
        "lora/pixel.safetensors": ("lora", "lora_sd1"),
        "controlnet/canny.safetensors": ("controlnet", "controlnet_sd1"),
        "esrgan/x4.safetensors": ("upscaler", "esrgan"),
    }


def test_comfyui_folder_names(library: Library, data_dir: Path) -> None:
    library.add("flux-tiny-diffusion-model", "unet/flux.safetensors")
    library.add("clip-l-text-encoder", "clip/clip_l.safetensors")
    library.add("lora-sd1-kohya-r4", "loras/style/pixel.safetensors")
    library.add("esrgan-x4-1block-oldkeys", "upscale_models/4x.safetensors")
    library.add("taesd", "vae_approx/taesd_decoder.safetensors")
    entries = _catalog(library, data_dir).scan()
    assert all(not e.warnings for e in entries), [e.warnings for e in entries]
    assert {e.role for e in entries} == {"diffusion_model", "text_encoder", "lora", "upscaler", "taesd"}


def test_automatic1111_install_with_embeddings_beside_models(tmp_path: Path, data_dir: Path) -> None:
    install = Library(tmp_path / "stable-diffusion-webui")
    install.add("sd1-sdxs", "models/Stable-diffusion/sdxs.safetensors")
    install.add("lora-sd1-kohya-r4", "models/Lora/pixel.safetensors")
    install.add("vae-sd1-dec32", "models/VAE/vae.safetensors")
    install.add("realesrgan-x4-1block", "models/ESRGAN/x4.safetensors")
    install.add("controlnet-sd1", "models/ControlNet/canny.safetensors")
    install.write("embeddings/.keep", b"")
    from tests.test_headers import _write_torch_zip

    _write_torch_zip(install.root / "embeddings" / "bad-hands.pt", lambda T: {"string_to_param": {"*": T(4, 768)}})
    for root in (install.root, install.root / "models"):
        entries = {e.name: e for e in Catalog(root, data_dir / f"{root.name}.sqlite3").scan()}
        assert entries["Stable-diffusion/sdxs.safetensors"].role == "checkpoint"
        assert entries["Lora/pixel.safetensors"].role == "lora"
        assert entries["embeddings/bad-hands.pt"].role == "embedding"
        assert entries["embeddings/bad-hands.pt"].architecture == "embedding_sd1"
        assert not any(e.warnings for e in entries.values())


def test_folder_disagreeing_with_header_warns(library: Library, data_dir: Path) -> None:
    library.add("lora-sd1-kohya-r4", "vae/not-a-vae.safetensors")
    (entry,) = _catalog(library, data_dir).scan()
    assert entry.role == "lora"
    assert entry.warnings == ["in a vae folder, but the header says it is a lora"]


def test_broken_files_are_listed_not_raised(library: Library, data_dir: Path) -> None:
    library.write("checkpoints/empty.safetensors", b"")
    library.write("checkpoints/random.safetensors", os.urandom(4096))
    library.write("checkpoints/random.gguf", b"GGUF" + os.urandom(4096))
    library.write("checkpoints/junk.ckpt", os.urandom(4096))
    entries = _catalog(library, data_dir).scan()
    assert len(entries) == 4
    assert all(e.broken and e.error for e in entries)


def test_rescan_uses_cache_and_notices_changes(library: Library, data_dir: Path) -> None:
    library.add("taesd", "taesd/a.safetensors")
    path = library.add("vae-sd1-dec32", "vae/b.safetensors")
    catalog = _catalog(library, data_dir)
    read: list[str] = []
    catalog.scan(progress=read.append)
    assert sorted(read) == ["taesd/a.safetensors", "vae/b.safetensors"]
    read.clear()
    catalog.scan(progress=read.append)
    assert read == []  # nothing changed, nothing read
    path.unlink()  # replaced by another file under the same name (fixtures are hard links: never touch their mtime)
    library.add("vae-flux-16ch", "vae/b.safetensors")
    (library.root / "taesd" / "a.safetensors").unlink()
    entries = catalog.scan(progress=read.append)
    assert read == ["vae/b.safetensors"]
    assert [(e.name, e.architecture) for e in entries] == [("vae/b.safetensors", "vae_flux")]
    with sqlite3.connect(data_dir / "library.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM files").fetchone()[0] == 1


def test_lookup_by_name_file_or_stem_and_never_outside(library: Library, data_dir: Path) -> None:
    library.add("taesd", "taesd/taesd.safetensors")
    library.add("vae-sd1-dec32", "vae/sd.safetensors")
    library.add("vae-flux-16ch", "vae/sub/sd.safetensors")
    catalog = _catalog(library, data_dir)
    catalog.scan()
    assert catalog.get("taesd/taesd.safetensors").role == "taesd"
    assert catalog.get("taesd").role == "taesd"
    assert catalog.get("taesd.safetensors").role == "taesd"
    with pytest.raises(UnknownModel, match="ambiguous"):
        catalog.get("sd")
    assert catalog.get("vae/sub/sd").architecture == "vae_flux"
    for name in ("../data/library.sqlite3", "/etc/passwd", "vae/../taesd/taesd.safetensors"):
        with pytest.raises(UnknownModel):
            catalog.get(name)


def test_a_file_dropped_in_while_running_is_found_by_name(
    library: Library, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sdrest.library import catalog as module

    catalog = _catalog(library, data_dir)
    catalog.scan()
    monkeypatch.setattr(module, "RESCAN_ON_MISS_AFTER", 0.0)
    library.add("taesd", "taesd/new-taesd.safetensors")
    assert catalog.get("new-taesd").role == "taesd"  # the miss rescanned
    monkeypatch.setattr(module, "RESCAN_ON_MISS_AFTER", 60.0)
    library.add("vae-sd1-dec32", "vae/newer.safetensors")
    with pytest.raises(UnknownModel):
        catalog.get("newer")  # misses right after a scan do not rescan again (a flood of bad names costs nothing)


def test_a_change_another_process_scanned_first_still_counts(library: Library, data_dir: Path) -> None:
    """The CLI and the server share the cache file: when the CLI rescans a changed file first, the server's scan finds
    its row fresh and writes nothing, yet its entry differs, and views built on the old version must go."""
    path = library.add("taesd", "vae/b.safetensors")
    server, cli = _catalog(library, data_dir), _catalog(library, data_dir)
    server.scan()
    version = server.version
    path.unlink()
    library.add("vae-flux-16ch", "vae/b.safetensors")
    cli.scan()
    entries = server.scan()
    assert entries[0].architecture == "vae_flux" and server.version == version + 1


def test_a_model_trashed_from_an_automatic1111_install_comes_back_where_it_was(tmp_path: Path, data_dir: Path) -> None:
    from sdrest.library.trash import Trash

    install = Library(tmp_path / "stable-diffusion-webui")
    install.add("sd1-sdxs", "models/Stable-diffusion/sdxs.safetensors")
    catalog = Catalog(install.root, data_dir / "a1111.sqlite3")
    (entry,) = catalog.scan()
    assert entry.name == "Stable-diffusion/sdxs.safetensors"  # relative to models/, the library root here
    trash = Trash(data_dir / "trash", catalog.models_dir)
    record = trash.put(entry)
    assert not (install.root / "models/Stable-diffusion/sdxs.safetensors").exists()
    trash.restore(record.id)
    assert (install.root / "models/Stable-diffusion/sdxs.safetensors").is_file()
    assert [e.name for e in catalog.scan()] == ["Stable-diffusion/sdxs.safetensors"]
