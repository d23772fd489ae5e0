"""Quantize a model to GGUF with sd.cpp's converter, in a child process, into the library.

The output is written under a hidden temporary name and renamed into place only when sd.cpp reports success and the
result reads back as a GGUF file, so a failed or killed conversion leaves nothing behind; an existing file is kept
unless the caller forces it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from sdrest.engine import oneshot
from sdrest.engine.errors import EngineCrashed, TaskFailed
from sdrest.library.headers import HeaderError, read_header

# The GGUF types the binding converts to (the binding's GGML_TYPE_MAP; tests/test_engine_contract.py checks them),
# kept here so the CLI can validate arguments without starting the engine.
CONVERT_TYPES = (
    "f32", "f16", "bf16", "q4_0", "q4_1", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
    "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s", "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m", "tq1_0", "tq2_0", "mxfp4",
)  # fmt: skip


class ConvertError(RuntimeError):
    """The conversion did not produce a file; the message says why."""


def default_output(source: Path, output_type: str, folder: Path) -> Path:
    """`<folder>/<source stem>-<type>.gguf`."""
    return folder / f"{source.stem}-{output_type}.gguf"


def convert(
    source: Path,
    output: Path,
    output_type: str,
    *,
    force: bool = False,
    progress: oneshot.ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Convert `source` into `output` (GGUF of `output_type`) and return `output`."""
    if output_type not in CONVERT_TYPES:
        raise ConvertError(f"unknown type {output_type!r}; choose one of: {', '.join(CONVERT_TYPES)}")
    if not source.is_file():
        raise ConvertError(f"{source} is not a file")
    try:
        read_header(source)
    except HeaderError as e:
        raise ConvertError(f"{source.name} cannot be converted: {e}") from e
    if output.exists() and not force:
        raise ConvertError(f"{output} exists; pass --force to overwrite it")
    if output.suffix.lower() != ".gguf":
        raise ConvertError(f"the output must be a .gguf file, not {output.name}")
    output.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and without a model suffix, so a library scan never lists a half-written file.
    partial = output.with_name(f".{output.name}.partial")
    try:
        oneshot.run(
            "sdrest.engine.native:convert", str(source), str(partial), output_type, progress=progress, cancel=cancel
        )
        read_header(partial)
        os.replace(partial, output)
    except EngineCrashed as e:
        raise ConvertError(f"sd.cpp crashed converting {source.name} ({e})") from e
    except (TaskFailed, HeaderError) as e:
        raise ConvertError(f"sd.cpp could not convert {source.name}: {e}") from e
    finally:
        partial.unlink(missing_ok=True)
    return output
