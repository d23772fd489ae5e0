"""Header readers: real files read, every kind of broken file gives a clear HeaderError, pickles run no code."""

from __future__ import annotations

import json
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import pytest

from sdrest.library.headers import HeaderError, read_header


def _safetensors(path: Path, header: object, data: bytes = b"") -> Path:
    blob = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def test_reads_safetensors_names_shapes_and_metadata(fixture_path) -> None:
    header = read_header(fixture_path("vae-flux-16ch"))
    assert header.format == "safetensors"
    assert header.tensors["decoder.conv_in.weight"].shape == (128, 16, 3, 3)
    assert header.tensors["decoder.conv_in.weight"].dtype == "F16"
    assert header.metadata == {"sdrest_fixture": "vae-flux-16ch"}
    assert list(header.tensors) == sorted(header.tensors)  # sd.cpp's order


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x01\x02\x03", "shorter than"),
        (struct.pack("<Q", 1 << 60) + b"{}", "claims"),
        (struct.pack("<Q", 5) + b"{nope", "not valid JSON"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
    ],
)
def test_broken_safetensors_give_clear_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(HeaderError, match=message):
        read_header(path)


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"dtype": 16, "shape": [2], "data_offsets": [0, 4]}, "dtype"),
        ({"dtype": "F16", "shape": "2,2", "data_offsets": [0, 4]}, "shape"),
        ({"dtype": "F16", "shape": [2], "data_offsets": [4, 0]}, "data_offsets"),
        ({"dtype": "F16", "shape": [2]}, "data_offsets"),
        ("not an object", "dtype"),
    ],
)
def test_wrong_typed_header_fields_are_named(tmp_path: Path, info: object, message: str) -> None:
    path = _safetensors(tmp_path / "typed.safetensors", {"w": info}, b"\0" * 8)
    with pytest.raises(HeaderError, match=message):
        read_header(path)


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    path = _safetensors(
        tmp_path / "cut.safetensors", {"w": {"dtype": "F16", "shape": [8], "data_offsets": [0, 16]}}, b"\0" * 5
    )
    with pytest.raises(HeaderError, match="truncated"):
        read_header(path)


def test_random_bytes_named_gguf(tmp_path: Path) -> None:
    path = tmp_path / "x.gguf"
    path.write_bytes(b"GGUF" + bytes(range(256)) * 8)
    with pytest.raises(HeaderError, match="GGUF"):
        read_header(path)


def test_reads_gguf_with_types_in_pytorch_order(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "enc.gguf"
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_tensor("token_embd.weight", np.zeros((10, 4), dtype=np.float16))
    writer.add_tensor("blk.0.attn_q_norm.weight", np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    header = read_header(path)
    assert header.format == "gguf"
    assert header.metadata["general.architecture"] == "qwen3"
    assert header.tensors["token_embd.weight"].shape == (10, 4)
    assert header.tensors["token_embd.weight"].dtype == "F16"


# -- torch pickles ----------------------------------------------------------------------------------------------------


class _FakeStorage:
    pass


def _write_torch_zip(path: Path, payload: object) -> Path:
    """A checkpoint in torch's zip layout, pickled through stand-ins for torch's classes (torch is not installed)."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args: object) -> None:
        raise AssertionError("never called when pickling")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    half = type("HalfStorage", (), {"__module__": "torch"})
    torch.HalfStorage = half  # type: ignore[attr-defined]

    class Tensor:
        def __init__(self, *shape: int) -> None:
            self.shape = shape

        def __reduce__(self) -> tuple[object, ...]:
            return (_rebuild_tensor_v2, (_FakeStorage(), 0, self.shape, (1,), False, {}))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: object) -> object:
            return ("storage", half, "0", "cpu", 4) if isinstance(obj, _FakeStorage) else None

    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        with zipfile.ZipFile(path, "w") as archive, archive.open("archive/data.pkl", "w") as stream:
            Pickler(stream, protocol=2).dump(payload(Tensor) if callable(payload) else payload)
    finally:
        del sys.modules["torch"], sys.modules["torch._utils"]
    return path


def test_torch_zip_checkpoint_names_and_shapes(tmp_path: Path) -> None:
    path = _write_torch_zip(
        tmp_path / "model.ckpt",
        lambda T: {"state_dict": {"first_stage_model.decoder.conv_in.weight": T(512, 4, 3, 3), "step": 5}},
    )
    header = read_header(path)
    assert header.format == "torch"
    assert header.tensors["first_stage_model.decoder.conv_in.weight"].shape == (512, 4, 3, 3)
    assert header.tensors["first_stage_model.decoder.conv_in.weight"].dtype == "F16"


def test_textual_inversion_pt_layout(tmp_path: Path) -> None:
    path = _write_torch_zip(tmp_path / "emb.pt", lambda T: {"string_to_param": {"*": T(2, 768)}, "name": "x"})
    assert read_header(path).tensors["string_to_param.*"].shape == (2, 768)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_code_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    with zipfile.ZipFile(path, "w") as archive, archive.open("archive/data.pkl", "w") as stream:
        pickle.dump({"state_dict": _Evil(marker)}, stream, protocol=2)
    with pytest.raises(HeaderError):
        read_header(path)  # no tensors, and above all no side effect
    assert not marker.exists()

    legacy = tmp_path / "evil.pt"
    legacy.write_bytes(pickle.dumps(_Evil(marker), protocol=2) * 4)
    with pytest.raises(HeaderError):
        read_header(legacy)
    assert not marker.exists()
