"""Input images of a job: fetch, decode, check and shape what a client sends (init images, masks, references).

An image arrives as base64 text (bare or a `data:` URL), as `{"output": "<job id>/<file name>"}` naming an earlier
output of this server, or as `{"url": "https://..."}` when a setting allows it. Every failure is an `InputError`
carrying the JSON path of the field it came from.
"""

from __future__ import annotations

import http.client
import io
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta
from PIL import Image, ImageChops, ImageFilter, ImageOps

from sdrest import http_only, images

_JOB_ID = re.compile(r"[0-9a-f]{32}")
_URL_SCHEMES = ("http", "https")
_CHUNK = 64 * 1024


class InputError(ValueError):
    """An input image a client sent cannot be used; `field` is its JSON path ($.init_image, $.ref_images[1], ...).

    `message` is the reason; the error's text starts with the field's name in words ("init_image: ...").
    """

    def __init__(self, message: str, field: str) -> None:
        self.field = field
        self.message = f"{field.removeprefix('$.')}: {message}"
        super().__init__(self.message)


class ImageRef(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """An image given by reference: `{"output": "<job id>/<file name>"}`, an earlier output of this server, or
    `{"url": "https://..."}`, fetched only when a setting allows it. Exactly one of the two."""

    output: str | None = None
    url: str | None = None

    def __post_init__(self) -> None:
        if (self.output is None) == (self.url is None):
            raise ValueError('an image reference takes exactly one of "output" or "url"')


# A str is base64, bare or a data: URL. (msgspec cannot tell two untagged Structs apart, hence one ImageRef.)
ImageInput = str | ImageRef

# (job id, file name) -> the file's bytes; raises LookupError (or a subclass) when there is no such output.
OutputResolver = Callable[[str, str], bytes]


class Limits(msgspec.Struct, frozen=True):
    """What one input image may be: its file size, its pixel count, and whether URLs are fetched at all."""

    max_bytes: int  # of one decoded image file
    max_pixels: int  # of one image, checked from its header before decoding
    allow_urls: bool = False
    url_timeout: float = 10.0  # seconds for each network wait, and for the whole download


class Padding(msgspec.Struct, forbid_unknown_fields=True):
    """How far outpainting extends each side of the image, in pixels."""

    left: Annotated[int, Meta(ge=0, le=2048)] = 0
    right: Annotated[int, Meta(ge=0, le=2048)] = 0
    top: Annotated[int, Meta(ge=0, le=2048)] = 0
    bottom: Annotated[int, Meta(ge=0, le=2048)] = 0


def load_image(value: ImageInput, field: str, limits: Limits, outputs: OutputResolver) -> Image.Image:
    """Decode one input image (RGB, RGBA or L) from base64, an output of this server or a URL, within `limits`."""
    match value:
        case str():
            size = _base64_size(value)
            if size > limits.max_bytes:
                raise InputError(_too_big(size, limits), field)
            try:
                return images.decode_base64_image(value, limits.max_pixels)
            except images.ImageError as e:
                raise InputError(str(e), field) from None
        case ImageRef(output=str() as ref):
            return _decode(_read_output(ref, field, outputs), field, limits)
        case ImageRef(url=str() as url):
            return _decode(_fetch(url, field, limits), field, limits)
    raise InputError("expected base64 image data or an object with an output or a url", field)


def _base64_size(text: str) -> int:
    """The byte size base64 text decodes to, counted without decoding it (whitespace and '=' padding skipped)."""
    body = text.strip()
    if body[:5].lower() == "data:":
        body = body.partition(",")[2]
    characters = len(body) - sum(body.count(c) for c in " \t\r\n\f\v=")
    return characters * 3 // 4


def _too_big(size: int, limits: Limits) -> str:
    return f"the image file is {size} bytes; the limit is {limits.max_bytes} bytes"


def _decode(data: bytes, field: str, limits: Limits) -> Image.Image:
    if len(data) > limits.max_bytes:
        raise InputError(_too_big(len(data), limits), field)
    try:
        return images.decode_image(data, limits.max_pixels)
    except images.ImageError as e:
        raise InputError(str(e), field) from None


def _read_output(ref: str, field: str, outputs: OutputResolver) -> bytes:
    job_id, _, filename = ref.partition("/")
    # Checked here, before the resolver sees them, so no reference can climb out of a job's folder.
    if not _JOB_ID.fullmatch(job_id):
        raise InputError(f"an output reference must look like <job id>/<file name> (32 hex digits), not {ref!r}", field)
    if not filename or filename.startswith(".") or any(c in filename for c in "/\\\0"):
        raise InputError(f"{filename!r} is not the name of an output file", field)
    try:
        return outputs(job_id, filename)
    except LookupError:
        raise InputError(f"there is no output {ref} of this server", field) from None


def _fetch(url: str, field: str, limits: Limits) -> bytes:
    if not limits.allow_urls:
        raise InputError(
            "fetching images from URLs is off: it lets a client make the server request any address "
            "(server-side request forgery); set allow_input_urls = true to allow it",
            field,
        )
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InputError("the url is not a valid URL", field) from None
    if parts.scheme.lower() not in _URL_SCHEMES or not host:
        raise InputError("only http:// and https:// URLs can be fetched", field)
    request = urllib.request.Request(url, headers={"Accept": "image/png, image/jpeg, image/webp"})
    # The timeout bounds each wait; the deadline bounds a server that sends a byte just before each one ends.
    deadline = time.monotonic() + limits.url_timeout
    data: bytes | None = None
    try:
        with http_only.opener().open(request, timeout=limits.url_timeout) as response:
            declared = response.headers.get("Content-Length", "")
            if not (declared.isdigit() and int(declared) > limits.max_bytes):
                data = _read_at_most(response, limits.max_bytes + 1, deadline)
    except urllib.error.HTTPError as e:
        e.close()
        reason = f"HTTP {e.code} {e.reason}"
    except urllib.error.URLError as e:
        reason = str(e.reason)
    except (OSError, http.client.HTTPException, ValueError) as e:
        reason = str(e) or type(e).__name__
    else:
        if data is None or len(data) > limits.max_bytes:
            raise InputError(f"the image at {host} is larger than the limit of {limits.max_bytes} bytes", field)
        return data
    raise InputError(f"could not fetch the image from {host}: {reason}", field)


def _read_at_most(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    buffer = bytearray()
    while len(buffer) < limit:
        chunk = response.read1(min(_CHUNK, limit - len(buffer)))  # one recv: each wait is bounded
        if not chunk:
            break
        buffer += chunk
        if time.monotonic() > deadline:
            raise TimeoutError("the download took too long")
    return bytes(buffer)


def fit(image: Image.Image, width: int, height: int, field: str) -> tuple[Image.Image, str | None]:
    """Stretch `image` to exactly width x height, as A1111's default "Just resize" does, and say so when it did.

    An L image (a mask) stays L; anything else becomes RGB, transparency flattened over white as A1111 does.
    """
    if width < 1 or height < 1:
        raise ValueError(f"cannot fit an image to {width}x{height}")
    picture = image if image.mode == "L" else _rgb(image)
    if picture.size == (width, height):
        return picture, None
    w, h = picture.size
    warning = f"{field} was {w}x{h}; resized to {width}x{height}"
    return picture.resize((width, height), Image.Resampling.LANCZOS), warning


def _rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if "A" not in image.getbands() and "transparency" not in image.info:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")


def prepare_mask(
    mask: Image.Image, width: int, height: int, field: str, *, blur: int = 0, invert: bool = False
) -> tuple[Image.Image, str | None]:
    """An inpainting mask in mode L at width x height, white (255) where the image is repainted.

    A mask whose alpha channel is not fully opaque is read as OpenAI's edits API reads it: transparent areas are
    edited (L = 255 - alpha). Otherwise its grey levels are the mask. Then `invert` flips it and `blur` softens it.
    """
    levels, warning = fit(_mask_levels(mask), width, height, field)
    if invert:
        levels = ImageOps.invert(levels)
    if blur > 0:
        levels = levels.filter(ImageFilter.GaussianBlur(blur))
    return levels, warning


def _mask_levels(mask: Image.Image) -> Image.Image:
    if mask.mode == "P" and "transparency" in mask.info:
        mask = mask.convert("RGBA")
    if "A" in mask.getbands():
        alpha = mask.getchannel("A")
        low, _ = alpha.getextrema()
        if isinstance(low, int) and low < 255:
            return ImageOps.invert(alpha)
    return mask.convert("L")


def outpaint_canvas(
    image: Image.Image, padding: Padding, multiple: int, *, blur: int = 8, overlap: int = 8
) -> tuple[Image.Image, Image.Image]:
    """The canvas (RGB) and mask (L) for outpainting `image` by `padding`.

    Each side of the canvas is rounded up to a multiple of `multiple` by growing the right and bottom padding. The
    new area holds the image's edge pixels stretched outward. The mask is white over the new area and `overlap`
    pixels into the image on each extended side, so the seams are repainted, black elsewhere, then blurred by `blur`;
    the new area stays fully white, so none of the stretched pixels survive.
    """
    if not (padding.left or padding.right or padding.top or padding.bottom):
        raise InputError("give at least one side to extend", "$.outpaint")
    if multiple < 1:
        raise ValueError(f"multiple must be at least 1, not {multiple}")
    source = _rgb(image)
    w, h = source.size
    left, top = padding.left, padding.top
    right = padding.right + -(w + left + padding.right) % multiple
    bottom = padding.bottom + -(h + top + padding.bottom) % multiple
    width, height = left + w + right, top + h + bottom

    canvas = Image.new("RGB", (width, height))
    canvas.paste(source, (left, top))
    # Edge replication: stretch the 1-pixel columns sideways, then the full rows (now with their corners) up and down.
    stretch = Image.Resampling.NEAREST
    if left:
        canvas.paste(source.crop((0, 0, 1, h)).resize((left, h), stretch), (0, top))
    if right:
        canvas.paste(source.crop((w - 1, 0, w, h)).resize((right, h), stretch), (left + w, top))
    if top:
        canvas.paste(canvas.crop((0, top, width, top + 1)).resize((width, top), stretch), (0, 0))
    if bottom:
        canvas.paste(canvas.crop((0, top + h - 1, width, top + h)).resize((width, bottom), stretch), (0, top + h))

    new_area = Image.new("L", (width, height), 255)
    new_area.paste(0, (left, top, left + w, top + h))
    keep = (
        left + (overlap if left else 0),
        top + (overlap if top else 0),
        left + w - (overlap if right else 0),
        top + h - (overlap if bottom else 0),
    )
    mask = Image.new("L", (width, height), 255)
    if keep[0] < keep[2] and keep[1] < keep[3]:
        mask.paste(0, keep)
    if blur > 0:
        mask = ImageChops.lighter(mask.filter(ImageFilter.GaussianBlur(blur)), new_area)
    return canvas, mask


def png_bytes(image: Image.Image) -> bytes:
    """A lossless PNG of `image`, written fast (compress_level=1), for keeping a job's inputs beside it."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
