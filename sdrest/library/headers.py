"""Read a model file's tensor names, shapes and metadata from its header, never its tensor data.

Three formats: safetensors (8-byte length + JSON), GGUF (through the `gguf` package) and PyTorch `.ckpt/.pt/.pth`
files (zip archives or the legacy stream), whose pickle is walked by an unpickler that builds no real objects and
calls no code. Every failure is a `HeaderError` with a message a user can act on.
"""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import IO, Any

import msgspec

# A real safetensors header is a few MiB at most (an LLM with thousands of tensors stays under 2 MiB).
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
MAX_PICKLE = 256 * 1024 * 1024

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
GGUF_SUFFIXES = (".gguf",)
TORCH_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MODEL_SUFFIXES = SAFETENSORS_SUFFIXES + GGUF_SUFFIXES + TORCH_SUFFIXES


class HeaderError(ValueError):
    """The file is not a model file this library can read; the message says why."""


class Tensor(msgspec.Struct, frozen=True, array_like=True):
    """One tensor as the header declares it. `shape` is in PyTorch order (outermost dimension first)."""

    dtype: str
    shape: tuple[int, ...]


class Header(msgspec.Struct):
    """Everything the header of a model file says, in the order sd.cpp would see the tensors."""

    format: str
    tensors: dict[str, Tensor]
    metadata: dict[str, str] = {}


def read_header(path: Path) -> Header:
    """Read the header of `path`, choosing the reader by the file's magic bytes rather than its name."""
    try:
        with open(path, "rb") as f:
            magic = f.read(8)
            size = path.stat().st_size
    except OSError as e:
        raise HeaderError(f"cannot read {path.name}: {e.strerror}") from e
    if size == 0:
        raise HeaderError("the file is empty")
    if magic[:4] == b"GGUF":
        return _read_gguf(path)
    if magic[:4] == b"PK\x03\x04":
        return _read_torch_zip(path)
    if magic[:2] == b"\x80\x02" or path.suffix.lower() in TORCH_SUFFIXES:
        return _read_torch_legacy(path)
    return _read_safetensors(path, size)


# -- safetensors ------------------------------------------------------------------------------------------------------


def _read_safetensors(path: Path, size: int) -> Header:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError("not a safetensors file: shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_SAFETENSORS_HEADER or length + 8 > size:
            raise HeaderError(
                f"not a safetensors file: its header claims {length} bytes"
                + (" (more than the file holds)" if length + 8 > size else "")
            )
        raw = f.read(length)
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeaderError(f"not a safetensors file: the header is not valid JSON ({e})") from e
    if not isinstance(doc, dict):
        raise HeaderError("not a safetensors file: the header is not a JSON object")
    metadata = doc.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise HeaderError("malformed safetensors header: __metadata__ is not an object")
    tensors: dict[str, Tensor] = {}
    data_end = 0
    # sd.cpp parses the header into a sorted JSON object, so it meets the tensors in name order; so do we.
    for name in sorted(doc):
        info = doc[name]
        dtype = info.get("dtype") if isinstance(info, dict) else None
        shape = info.get("shape") if isinstance(info, dict) else None
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if not isinstance(dtype, str):
            raise HeaderError(f"malformed safetensors header: tensor {name!r} has no string dtype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise HeaderError(f"malformed safetensors header: tensor {name!r} has a shape that is not a list of sizes")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise HeaderError(f"malformed safetensors header: tensor {name!r} has invalid data_offsets")
        data_end = max(data_end, offsets[1])
        tensors[name] = Tensor(dtype, tuple(shape))
    if 8 + length + data_end > size:
        raise HeaderError(f"truncated: the header describes {8 + length + data_end} bytes but the file has {size}")
    return Header("safetensors", tensors, {str(k): _text(v) for k, v in metadata.items()})


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- GGUF -------------------------------------------------------------------------------------------------------------


def _read_gguf(path: Path) -> Header:
    import gguf  # imported here: it pulls in numpy, which a scan of safetensors files never needs

    try:
        reader = gguf.GGUFReader(str(path), "r")
    except Exception as e:  # the reader raises whatever numpy or struct raise on a corrupt file
        raise HeaderError(f"not a readable GGUF file: {e}") from e
    metadata: dict[str, str] = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer."):
            continue  # format bookkeeping and vocabularies (huge), not metadata a user wants
        value = _gguf_value(gguf, field)
        if value is not None:
            metadata[key] = value
    tensors = {}
    for t in reader.tensors:
        dtype = gguf.GGMLQuantizationType(t.tensor_type).name
        # GGUF stores ggml's order (innermost first); turn it into PyTorch order like the other readers.
        tensors[t.name] = Tensor(dtype, tuple(int(d) for d in reversed(t.shape.tolist())))
    return Header("gguf", tensors, metadata)


def _gguf_value(gguf: Any, field: Any) -> str | None:
    if not field.types:
        return None
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        return None  # arrays are token lists and the like
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8", "replace")
    return str(field.parts[field.data[0]].tolist()[0])


# -- PyTorch pickles --------------------------------------------------------------------------------------------------


class _Opaque:
    """Stands in for every class a pickle names: records nothing, executes nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Opaque:
        return _Opaque()


class _Storage:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


_STORAGE_DTYPES = {
    "HalfStorage": "F16",
    "FloatStorage": "F32",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *args: Any) -> Tensor:
    dtype = storage.dtype if isinstance(storage, _Storage) else "?"
    return Tensor(dtype, tuple(int(d) for d in size) if isinstance(size, tuple | list) else ())


class _HeaderUnpickler(pickle.Unpickler):
    """Walks a torch pickle: tensors become `Tensor` records; every other class becomes an inert `_Opaque`."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        return _Opaque

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel); storage_type came through find_class as a dtype string.
        if isinstance(pid, tuple) and len(pid) >= 2 and isinstance(pid[1], str):
            return _Storage(pid[1])
        return _Storage("?")


def _unpickle(stream: IO[bytes]) -> Any:
    try:
        return _HeaderUnpickler(stream).load()
    except Exception as e:  # a corrupt pickle can fail in many ways; none of them may escape as a crash
        raise HeaderError(f"unreadable PyTorch pickle: {e}") from e


def _state_dict(obj: Any) -> dict[str, Tensor]:
    """Find the tensors in a loaded checkpoint: the dict itself, or its 'state_dict'/'model'/'module' entry."""
    if isinstance(obj, dict):
        direct = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
        if direct:
            if "string_to_param" in obj and isinstance(obj["string_to_param"], dict):
                direct.update({f"string_to_param.{k}": v for k, v in obj["string_to_param"].items()})
            return direct
        for key in ("state_dict", "model", "module", "params_ema", "params", "string_to_param"):
            if key in obj:
                found = _state_dict(obj[key])
                if found:
                    prefix = "string_to_param." if key == "string_to_param" else ""
                    return {prefix + k: v for k, v in found.items()}
    return {}


def _read_torch_zip(path: Path) -> Header:
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if not pickles:
                raise HeaderError("a zip archive without data.pkl: not a PyTorch checkpoint")
            info = archive.getinfo(pickles[0])
            if info.file_size > MAX_PICKLE:
                raise HeaderError(f"the checkpoint's pickle is {info.file_size} bytes, too large to inspect")
            with archive.open(info) as stream:
                obj = _unpickle(stream)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise HeaderError(f"not a readable PyTorch zip checkpoint: {e}") from e
    tensors = _state_dict(obj)
    if not tensors:
        raise HeaderError("a PyTorch checkpoint without tensors this library can find")
    return Header("torch", dict(sorted(tensors.items())))


def _read_torch_legacy(path: Path) -> Header:
    # The legacy stream is: magic number, protocol version, system info, then the object itself.
    with open(path, "rb") as f:
        try:
            for _ in range(3):
                _unpickle(f)
            obj = _unpickle(f)
        except HeaderError as e:
            raise HeaderError(f"not a model file this library can read ({e})") from e
    tensors = _state_dict(obj)
    if not tensors:
        raise HeaderError("not a model file this library can read: no tensors found")
    return Header("torch", dict(sorted(tensors.items())))
