"""Images in and out: PNG/JPEG/WebP encoding with AUTOMATIC1111's `parameters` infotext, thumbnails, and the
guarded decoding of images clients send (init images, masks, control images).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re

import msgspec
from PIL import Image, ImageOps, PngImagePlugin

# sd.cpp sampler ids -> the names A1111 shows (modules/sd_samplers_kdiffusion.py); the rest get a readable name.
SAMPLER_NAMES = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "heun": "Heun",
    "dpm2": "DPM2",
    "dpm++2s_a": "DPM++ 2S a",
    "dpm++2m": "DPM++ 2M",
    "dpm++2mv2": "DPM++ 2M v2",
    "ipndm": "iPNDM",
    "ipndm_v": "iPNDM v",
    "lcm": "LCM",
    "ddim_trailing": "DDIM",
    "tcd": "TCD",
    "res_multistep": "RES Multistep",
    "res_2s": "RES 2S",
    "er_sde": "ER SDE",
}
# sd.cpp scheduler ids -> A1111's "Schedule type" labels (modules/sd_schedulers.py; GITS is Forge's label).
SCHEDULE_TYPES = {
    # sd.cpp's discrete schedule is k-diffusion's DiscreteSchedule.get_sigmas, which A1111 calls Uniform.
    "discrete": "Uniform",
    "karras": "Karras",
    "exponential": "Exponential",
    "ays": "Align Your Steps",
    "gits": "Align Your Steps GITS",
    "sgm_uniform": "SGM Uniform",
    "simple": "Simple",
    "smoothstep": "Smoothstep",
    "kl_optimal": "KL Optimal",
    "lcm": "LCM",
    "bong_tangent": "Bong Tangent",
}

_MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_DECODERS = ["PNG", "JPEG", "WEBP"]
_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
# A1111's key-value regex (modules/infotext_utils.py): a key, then a JSON-quoted value or anything up to a comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_DATA_URL = re.compile(r"data:image/[\w.+-]+;base64,", re.IGNORECASE)
# Thumbnails are made from files this server wrote, but a folder can be edited by hand: keep a ceiling anyway.
_THUMBNAIL_MAX_PIXELS = 8192 * 8192


class ImageError(ValueError):
    """A client-supplied image cannot be used; the message says why in terms the client can act on."""


class Infotext(msgspec.Struct, frozen=True, kw_only=True):
    """What A1111's `parameters` text records about one image. `sampler`/`scheduler` take sd.cpp ids (or names)."""

    prompt: str
    negative_prompt: str = ""
    steps: int
    sampler: str
    scheduler: str | None = None
    cfg_scale: float
    seed: int
    width: int
    height: int
    model_name: str
    model_hash: str | None = None  # AutoV2: the first 10 hex digits of the file's SHA-256
    clip_skip: int | None = None
    denoising_strength: float | None = None  # img2img only
    guidance: float | None = None  # Flux distilled guidance
    loras: list[tuple[str, float]] = []
    lora_hashes: dict[str, str] = {}  # LoRA name -> short hash, as A1111's "Lora hashes"
    extra: dict[str, str] = {}  # further "Key: value" pairs, written last (e.g. Version)


def _number(value: float) -> str:
    """A1111-style numbers as people read them: 7 not 7.0, 4.5 stays 4.5, no float noise."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer():
        return str(int(value))
    return repr(round(value, 6))


def _quote(value: str) -> str:
    # A1111 quotes on , : and newline; a quote is added so a value that starts with one reads back unchanged.
    if any(c in value for c in ',:\n"'):
        return json.dumps(value, ensure_ascii=False)
    return value


def format_infotext(info: Infotext) -> str:
    """The text A1111 writes as `parameters`: prompt, `Negative prompt: …` if any, then one `Key: value, …` line."""
    prompt = info.prompt
    for name, weight in info.loras:
        if f"<lora:{name}:" not in prompt:
            prompt = f"{prompt} <lora:{name}:{_number(weight)}>".lstrip()
    params: dict[str, str | None] = {
        "Steps": str(info.steps),
        "Sampler": SAMPLER_NAMES.get(info.sampler, info.sampler),
        "Schedule type": SCHEDULE_TYPES.get(info.scheduler, info.scheduler) if info.scheduler else None,
        "CFG scale": _number(info.cfg_scale),
        # Forge's name and place for Flux guidance, so its PNG Info tab fills the right slider.
        "Distilled CFG Scale": _number(info.guidance) if info.guidance is not None else None,
        "Seed": str(info.seed),
        "Size": f"{info.width}x{info.height}",
        "Model hash": info.model_hash,
        "Model": info.model_name or None,
        "Denoising strength": _number(info.denoising_strength) if info.denoising_strength is not None else None,
        "Clip skip": str(info.clip_skip) if info.clip_skip is not None and info.clip_skip > 1 else None,
        "Lora hashes": ", ".join(f"{_lora_alias(k)}: {v}" for k, v in info.lora_hashes.items()) or None,
    }
    params.update(info.extra)
    line = ", ".join(f"{key}: {_quote(value)}" for key, value in params.items() if value is not None)
    negative = f"\nNegative prompt: {info.negative_prompt}" if info.negative_prompt else ""
    return f"{prompt}{negative}\n{line}".strip()


def _lora_alias(name: str) -> str:
    # A1111 strips these from LoRA names in "Lora hashes" so the inner list stays parseable.
    return name.replace(":", "").replace(",", "")


def parse_infotext(text: str) -> dict[str, str]:
    """The inverse of `format_infotext`, as A1111 parses it: "Prompt", "Negative prompt" and each key, unquoted."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[len("Negative prompt:") :].strip()
        target.append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last):
        if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        result[key] = value
    return result


def media_type(fmt: str) -> str:
    """The MIME type of an output format: png, jpeg or webp."""
    try:
        return _MEDIA_TYPES[fmt]
    except KeyError:
        raise ValueError(f"unknown image format {fmt!r}; expected one of {', '.join(_MEDIA_TYPES)}") from None


def sniff_media_type(data: bytes) -> str:
    """The MIME type of encoded image bytes, from their signature."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def _has_transparency(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        low, _ = image.convert("RGBA").getchannel("A").getextrema()
        return isinstance(low, int) and low < 255
    return False


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited over white (JPEG has no alpha)."""
    if not _has_transparency(image):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _user_comment(text: str) -> Image.Exif:
    # What A1111 writes with piexif.helper.UserComment.dump(encoding="unicode"): the 8-byte "UNICODE\0" code, then
    # UTF-16BE. Pillow writes a new Exif block big-endian ("MM"), as piexif does, so the two agree on byte order.
    exif = Image.Exif()
    exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\0" + text.encode("utf-16-be")
    return exif


def jpeg_data_url(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def from_raw(mode: str, width: int, height: int, pixels: bytes) -> Image.Image:
    """An image from the raw pixels the engine sends (`Image.tobytes()` of that mode and size)."""
    return Image.frombytes(mode, (width, height), pixels)


# zlib level 4: the same size as Pillow's default 6 on photo-like images, 30 % less time (bench/png_level.py).
PNG_LEVEL = 4


def encode_image(image: Image.Image, fmt: str, infotext: str | None, quality: int = 95) -> bytes:
    """Encode an output: PNG with a `parameters` text chunk, JPEG/WebP with the infotext as EXIF UserComment."""
    media_type(fmt)
    buffer = io.BytesIO()
    if fmt == "png":
        keep_alpha = _has_transparency(image)
        picture = image.convert("RGBA" if keep_alpha else "RGB")
        pnginfo = None
        if infotext is not None:
            pnginfo = PngImagePlugin.PngInfo()
            pnginfo.add_text("parameters", infotext)  # tEXt if Latin-1, else iTXt (UTF-8), as in A1111
        picture.save(buffer, format="PNG", pnginfo=pnginfo, compress_level=PNG_LEVEL)
    else:
        if fmt == "webp" and _has_transparency(image):
            picture = image.convert("RGBA")
        else:
            picture = _flatten(image)
        options: dict[str, object] = {"quality": quality}
        if infotext is not None:
            options["exif"] = _user_comment(infotext)
        picture.save(buffer, format="JPEG" if fmt == "jpeg" else "WEBP", **options)
    return buffer.getvalue()


def _decode_user_comment(value: bytes, endian: str | None) -> str:
    """Read UserComment the way piexif.helper.UserComment.load does, plus the Exif byte order for UNICODE."""
    code, body = value[:8], value[8:]
    if code == b"UNICODE\0":
        # A1111's own files are big-endian; other writers use the Exif block's byte order.
        text = body.decode("utf-16-le" if endian == "<" else "utf-16-be", errors="replace")
    elif code == b"JIS\0\0\0\0\0":
        text = body.decode("shift_jis", errors="replace")
    elif code in (b"ASCII\0\0\0", b"\0" * 8):
        text = body.decode("utf-8", errors="replace")
    else:
        text = value.decode("utf-8", errors="ignore")
    return text.rstrip("\0")


def read_infotext(data: bytes) -> str | None:
    """The infotext stored in a PNG, JPEG or WebP (PNG `parameters` chunk or EXIF UserComment), or None.

    Only metadata read while opening is used, so no pixels are decoded.
    """
    image = _open(data)
    text = image.info.get("parameters")
    if isinstance(text, str):
        return str(text)  # a PNG iTXt value is a str subclass carrying language tags
    if "exif" not in image.info:
        return None
    try:
        exif = image.getexif()
        comment = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except (OSError, SyntaxError, ValueError):
        return None  # a broken EXIF block holds no infotext we could trust
    if isinstance(comment, str):
        return comment or None
    if isinstance(comment, bytes):
        return _decode_user_comment(comment, exif.endian) or None
    return None


def thumbnail(data: bytes, size: int) -> bytes:
    """A JPEG (PNG when the source has real transparency) whose longer side is at most `size`; never upscaled."""
    if not 1 <= size <= 1024:
        raise ValueError(f"thumbnail size must be between 1 and 1024, not {size}")
    image = _decode(data, _THUMBNAIL_MAX_PIXELS, draft=size)
    transparent = _has_transparency(image)
    image = image.convert("RGBA" if transparent else "RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if transparent:
        image.save(buffer, format="PNG", optimize=True)
    else:
        image.save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


def _open(data: bytes) -> Image.Image:
    """Open (headers only) a PNG, JPEG or WebP, or raise ImageError."""
    if not data:
        raise ImageError("the image is empty")
    try:
        return Image.open(io.BytesIO(data), formats=_DECODERS)
    except Image.DecompressionBombError as e:
        raise ImageError(f"the image declares too many pixels to decode safely ({e})") from None
    except (OSError, SyntaxError, ValueError, EOFError):
        raise ImageError("the data is not a PNG, JPEG or WebP image") from None


def _decode(data: bytes, max_pixels: int, draft: int | None = None) -> Image.Image:
    """Open, check the declared size against `max_pixels`, then decode and apply EXIF orientation."""
    image = _open(data)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageError(f"the image is {width}x{height} ({width * height} pixels); the limit is {max_pixels} pixels")
    fmt = image.format
    try:
        if draft is not None:
            image.draft("RGB", (draft, draft))  # JPEG only: decode at a fraction of the size when that suffices
        image.load()
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"the {fmt} image is damaged or truncated: {e}") from None


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode a client's PNG, JPEG or WebP into RGB, RGBA or L, refusing more than `max_pixels` before decoding.

    EXIF orientation is applied, so a phone photo arrives the right way up; animated images give their first frame.
    """
    image = _decode(data, max_pixels)
    if image.mode in ("RGB", "RGBA", "L"):
        return image
    return image.convert("RGBA" if _has_transparency(image) else "RGB")


def decode_base64_image(text: str, max_pixels: int) -> Image.Image:
    """`decode_image` for base64 text, bare or as a `data:image/…;base64,` URL."""
    text = text.strip()
    if text[:5].lower() == "data:":
        match = _DATA_URL.match(text)
        if match is None:
            raise ImageError("a data URL must look like data:image/png;base64,<data>")
        text = text[match.end() :]
    payload = "".join(text.split())
    try:
        # Some clients drop the trailing '=' padding; restore it rather than refuse the image.
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("the image is not valid base64") from None
    return decode_image(data, max_pixels)
