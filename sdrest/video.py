"""Encoding a video's frames: animated WebP with Pillow, MP4 through `ffmpeg` where the machine has it."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image


class VideoError(RuntimeError):
    """The frames could not be encoded as asked."""


def ffmpeg() -> str | None:
    """The ffmpeg executable, if installed."""
    return shutil.which("ffmpeg")


def encode(frames: list[Image.Image], fps: int, fmt: str, comment: str) -> tuple[bytes, str]:
    """The frames as one file of `fmt` ("webp" or "mp4"), with its media type."""
    if not frames:
        raise VideoError("the engine returned no frames")
    if fmt == "webp":
        buffer = io.BytesIO()
        rgb = [f.convert("RGB") for f in frames]
        duration = max(1, round(1000 / fps))
        rgb[0].save(buffer, format="WEBP", save_all=True, append_images=rgb[1:], duration=duration, loop=0,
                    quality=90, method=4)  # fmt: skip
        return buffer.getvalue(), "image/webp"
    if fmt == "mp4":
        return _mp4(frames, fps, comment), "video/mp4"
    raise VideoError(f"unknown video format {fmt!r}")


def _mp4(frames: list[Image.Image], fps: int, comment: str) -> bytes:
    executable = ffmpeg()
    if executable is None:
        raise VideoError("MP4 needs ffmpeg on the server; ask for webp or frames")
    with tempfile.TemporaryDirectory() as tmp:
        for index, frame in enumerate(frames):
            frame.convert("RGB").save(Path(tmp) / f"{index:05d}.png")
        out = Path(tmp) / "video.mp4"
        width, height = frames[0].size
        command = [
            executable, "-loglevel", "error", "-framerate", str(fps), "-i", str(Path(tmp) / "%05d.png"),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-vf", f"scale={width // 2 * 2}:{height // 2 * 2}",
            "-metadata", f"comment={comment}", "-movflags", "+faststart", str(out),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise VideoError(f"ffmpeg failed: {result.stderr.strip()[-500:]}")
        return out.read_bytes()
