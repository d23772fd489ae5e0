"""Binding calls the tests run in a child process through `sdrest.engine.oneshot` (never in the test process)."""

from __future__ import annotations

import io
from typing import Any


def generate_once(args: dict[str, str], params: dict[str, Any], options: dict[str, Any]) -> list[bytes]:
    """Load, generate, return PNG bytes."""
    from sdrest.engine import native

    model = native.Model(args, **options)
    try:
        pictures = model.generate(params)
    finally:
        model.close()
    out = []
    for picture in pictures:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out
