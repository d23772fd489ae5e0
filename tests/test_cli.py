"""The `sdrest` command end to end: models, inspect, hash, convert, version."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdrest.cli import main
from sdrest.engine import oneshot
from sdrest.engine.errors import EngineCrashed
from tests.conftest import Library


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def lib_args(library: Library, data_dir: Path) -> list[str]:
    return ["--models-dir", str(library.root), "--data-dir", str(data_dir)]


def test_models_json_has_the_promised_keys(capsys, library: Library, lib_args: list[str]) -> None:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    library.write("checkpoints/broken.safetensors", b"\x10" * 64)
    code, out, _ = _run(capsys, "models", *lib_args, "--json")
    assert code == 0
    models = {m["name"]: m for m in json.loads(out)}
    for model in models.values():
        assert {"path", "role", "architecture", "plan"} <= set(model)
    flux = models["diffusion_models/flux-tiny.safetensors"]
    assert flux["plan"]["vae_path"] == str(library.root / "vae/ae.safetensors")
    assert models["vae/ae.safetensors"]["plan"] is None
    assert models["checkpoints/broken.safetensors"]["broken"] is True


def test_models_table_lists_broken_files(capsys, library: Library, lib_args: list[str]) -> None:
    library.add("taesd", "taesd/taesd.safetensors")
    library.write("vae/empty.safetensors", b"")
    code, out, _ = _run(capsys, "models", *lib_args)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "ARCHITECTURE", "SIZE", "FORMAT", "WARNINGS"]
    assert any(line.startswith("vae/empty.safetensors") and " broken " in line and "empty" in line for line in lines)


def test_models_creates_typed_folders_for_a_new_library(capsys, tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "models", "--models-dir", str(tmp_path / "m"), "--data-dir", str(tmp_path / "d"))
    assert code == 0 and "No model files" in out
    assert (tmp_path / "m" / "checkpoints").is_dir() and (tmp_path / "m" / "text_encoders").is_dir()


def test_inspect_shows_plan_and_metadata(capsys, library: Library, lib_args: list[str]) -> None:
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    code, out, _ = _run(capsys, "inspect", "sdxs", *lib_args, "--json")
    info = json.loads(out)
    assert code == 0
    assert (info["role"], info["architecture"], info["sd_version"]) == ("checkpoint", "sdxs_512_ds", "SDXS (512-DS)")
    assert info["plan"] == {"model_path": str(library.root / "checkpoints/sdxs.safetensors")}
    assert info["metadata"] == {"sdrest_fixture": "sd1-sdxs"}
    code, out, _ = _run(capsys, "inspect", str(library.root / "checkpoints/sdxs.safetensors"), *lib_args)
    assert code == 0 and "sdxs_512_ds" in out and "model_path" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"\xff" * 100, "header claims"), (b"\x05\0\0\0\0\0\0\0{bad}", "not valid JSON")],
)
def test_inspect_broken_file_fails_clearly(capsys, tmp_path: Path, lib_args, content: bytes, message: str) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    code, out, _ = _run(capsys, "inspect", str(path), *lib_args)
    assert code == 1
    assert "broken:" in out and message in out


def test_inspect_unknown_name(capsys, lib_args: list[str]) -> None:
    code, _, err = _run(capsys, "inspect", "nothing-here", *lib_args)
    assert code == 1 and "no model named 'nothing-here'" in err


def test_hash_equals_sha256sum_and_is_cached(capsys, library: Library, lib_args: list[str]) -> None:
    path = library.add("vae-sd1-dec32", "vae/sd.safetensors")
    expected = subprocess.run(["sha256sum", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]
    code, out, _ = _run(capsys, "hash", str(path), *lib_args)
    assert code == 0 and out.split()[0] == expected
    code, out, _ = _run(capsys, "hash", "vae/sd.safetensors", *lib_args, "--json")
    (result,) = json.loads(out)
    assert result["sha256"] == expected and result["autov2"] == expected[:10]
    with open(path, "rb") as f:
        f.seek(0x100000)
        assert result["legacy"] == hashlib.sha256(f.read(0x10000)).hexdigest()[:8]


def test_convert_refuses_to_overwrite_and_leaves_nothing_on_failure(
    capsys, library: Library, lib_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    library.add("flux-tiny-diffusion-model", "diffusion_models/flux-tiny.safetensors")
    target = library.root / "diffusion_models" / "flux-tiny-q8_0.gguf"
    target.write_bytes(b"keep me")
    code, _, err = _run(capsys, "convert", "flux-tiny", "--type", "q8_0", *lib_args)
    assert code == 1 and "exists; pass --force" in err
    assert target.read_bytes() == b"keep me"

    def crash(task: str, source: str, partial: str, kind: str, progress: object = None, cancel: object = None) -> None:
        Path(partial).write_bytes(b"half a file")
        raise EngineCrashed(-6, ["ggml.c:123 - GGML_ASSERT failed"])

    monkeypatch.setattr(oneshot, "run", crash)
    code, _, err = _run(capsys, "convert", "flux-tiny", "--type", "q8_0", "--force", *lib_args)
    assert code == 1 and "crashed" in err and "SIGABRT" in err
    assert sorted(p.name for p in target.parent.iterdir()) == ["flux-tiny-q8_0.gguf", "flux-tiny.safetensors"]
    assert target.read_bytes() == b"keep me"


def test_convert_rejects_unreadable_source_and_unknown_type(capsys, library: Library, lib_args: list[str]) -> None:
    library.write("checkpoints/bad.safetensors", b"\0" * 32)
    code, _, err = _run(capsys, "convert", "bad", "--type", "q4_0", *lib_args)
    assert code == 1
    assert "bad.safetensors cannot be converted" in err
    with pytest.raises(SystemExit):
        main(["convert", "bad", "--type", "q9_9", *lib_args])


@pytest.mark.binding
def test_version_reports_the_backend(capsys) -> None:
    code, out, _ = _run(capsys, "version", "--json")
    info = json.loads(out)
    assert code == 0
    assert info["binding"] == "0.4.7" and "CPU" in info["backends"] and info["backend"]


def test_console_script_runs(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sdrest", "models", "--models-dir", str(tmp_path), "--data-dir", str(tmp_path / "d")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_every_setting_is_a_flag_of_serve() -> None:
    from sdrest.cli import build_parser
    from sdrest.settings import FIELDS

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    flags = {option for action in serve._actions for option in action.option_strings}
    assert {"--" + name.replace("_", "-") for name in FIELDS} <= flags
    args = build_parser().parse_args(["serve", "--queue-size", "7", "--idle-unload-seconds", "1.5"])
    assert (args.queue_size, args.idle_unload_seconds) == (7, 1.5)
