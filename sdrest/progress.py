"""A terminal progress bar for long CLI operations (hashing, conversion); plain lines when not on a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class Bar:
    """`Bar(label)(done, total)` redraws one line; `close()` ends it. `unit="bytes"` shows sizes."""

    def __init__(self, label: str, unit: str = "steps", stream: TextIO | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        # Redraw at most 10 times a second on a terminal, every 5 s in a log.
        if done < total and now - self._last < (0.1 if self.tty else 5.0):
            return
        self._last = now
        fraction = done / total if total else 1.0
        if self.unit == "bytes":
            amount = f"{_size(done)}/{_size(total)}"
        else:
            amount = f"{done}/{total}"
        width = 30
        filled = int(fraction * width)
        line = f"{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} {amount}"
        if self.tty:
            self.stream.write("\r" + line + "\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
