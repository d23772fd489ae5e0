"""sdrest.images: A1111 infotext text, metadata round-trips in PNG/JPEG/WebP, thumbnails, guarded decoding."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import msgspec
import pytest
from PIL import Image

from sdrest import images
from sdrest.images import ImageError, Infotext

SD1 = Infotext(
    prompt="masterpiece, a cat on a sofa",
    negative_prompt="blurry, lowres",
    steps=20,
    sampler="euler_a",
    scheduler="karras",
    cfg_scale=7.0,
    seed=42,
    width=512,
    height=768,
    model_name="v1-5-pruned-emaonly",
    model_hash="6ce0161689",
    clip_skip=2,
    extra={"Version": "sdrest 0.1.0"},
)

FLUX = Infotext(
    prompt="a lighthouse at dusk, oil painting",
    steps=20,
    sampler="euler",
    scheduler="simple",
    cfg_scale=1.0,
    guidance=3.5,
    seed=1083098466,
    width=1024,
    height=1024,
    model_name="flux1-dev-q4_0",
    extra={"Version": "sdrest 0.1.0", "Backend": "CPU"},
)

# The example in the docstring of A1111's parse_generation_parameters (modules/infotext_utils.py).
A1111_EXAMPLE = (
    "girl with an artist's beret, determined, blue eyes, desert scene, computer monitors, heavy makeup, "
    "by Alphonse Mucha and Charlie Bowater, ((eyeshadow)), (coquettish), detailed, intricate\n"
    "Negative prompt: ugly, fat, obese, chubby, (((deformed))), [blurry], bad anatomy, disfigured, poorly drawn face, "
    "mutation, mutated, (extra_limb), (ugly), (poorly drawn hands), messy drawing\n"
    "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
)
# A Forge Flux infotext as found in the wild: quoted Lora hashes, Distilled CFG Scale, Module keys.
FORGE_EXAMPLE = (
    "portrait photo <lora:flux_lora_nina1:1>\n"
    "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 1083098466, "
    'Size: 1360x792, Model hash: 58725940e3, Model: flux-hyp16-Q5_0, Lora hashes: "flux_lora_nina1: e3b0c44298fc", '
    "Version: f2.0.1v1.10.1-previous-530-g8bd7e056, Diffusion in Low Bits: Automatic (fp16 LoRA), Module 1: ae"
)

CHINESE = "一只猫坐在沙发上，油画风格"


def _picture(mode: str = "RGBA", size: tuple[int, int] = (64, 48), alpha: int = 255) -> Image.Image:
    image = Image.new("RGB", size, (200, 40, 90))
    image.paste((20, 180, 60), (0, 0, size[0] // 2, size[1]))
    if mode == "RGBA":
        image.putalpha(alpha)
    return image


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height but carries no pixel data: a decompression bomb's shape, at 57 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


def _with(info: Infotext, **changes: object) -> Infotext:
    return msgspec.structs.replace(info, **changes)


def _encoded(fmt: str, size: tuple[int, int] = (64, 48)) -> bytes:
    return images.encode_image(_picture(size=size), fmt, None)


# --- infotext text ---


def test_sd1_infotext_is_exactly_a1111s():
    assert images.format_infotext(SD1) == (
        "masterpiece, a cat on a sofa\n"
        "Negative prompt: blurry, lowres\n"
        "Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 512x768, "
        "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Version: sdrest 0.1.0"
    )


def test_flux_infotext_has_guidance_and_no_negative_line():
    assert images.format_infotext(FLUX) == (
        "a lighthouse at dusk, oil painting\n"
        "Steps: 20, Sampler: Euler, Schedule type: Simple, CFG scale: 1, Distilled CFG Scale: 3.5, "
        "Seed: 1083098466, Size: 1024x1024, Model: flux1-dev-q4_0, Version: sdrest 0.1.0, Backend: CPU"
    )


def test_img2img_lora_and_numbers():
    info = Infotext(
        prompt="a castle",
        steps=30,
        sampler="dpm++2m",
        scheduler="discrete",
        cfg_scale=4.5,
        seed=7,
        width=768,
        height=512,
        model_name="sdxl_base",
        clip_skip=1,
        denoising_strength=0.75,
        loras=[("detail, tweaker", 0.8), ("style", 1.0)],
        lora_hashes={"detail, tweaker": "0123456789ab", "style": "ba9876543210"},
    )
    assert images.format_infotext(info) == (
        "a castle <lora:detail, tweaker:0.8> <lora:style:1>\n"
        "Steps: 30, Sampler: DPM++ 2M, Schedule type: Uniform, CFG scale: 4.5, Seed: 7, Size: 768x512, "
        'Model: sdxl_base, Denoising strength: 0.75, Lora hashes: "detail tweaker: 0123456789ab, style: ba9876543210"'
    )


def test_lora_already_in_the_prompt_is_not_repeated():
    info = _with(SD1, prompt="a cat <lora:style:0.5>", loras=[("style", 0.5)])
    assert images.format_infotext(info).splitlines()[0] == "a cat <lora:style:0.5>"


def test_unknown_sampler_and_scheduler_pass_through():
    line = images.format_infotext(_with(SD1, sampler="Euler a", scheduler="Karras")).splitlines()[-1]
    assert line.startswith("Steps: 20, Sampler: Euler a, Schedule type: Karras, ")


def test_every_sdcpp_sampler_and_scheduler_has_a_name():
    from sdrest.schemas import SAMPLERS, SCHEDULERS

    assert set(images.SAMPLER_NAMES) == set(SAMPLERS)
    assert set(images.SCHEDULE_TYPES) == set(SCHEDULERS)


def test_values_with_commas_colons_quotes_are_quoted_like_a1111():
    info = _with(
        SD1,
        model_name="my, model",
        extra={"Note": "a: b", "Quote": '"hi"', "Plain": "x y", "Multi": "one\ntwo"},
    )
    line = images.format_infotext(info).splitlines()[-1]
    assert 'Model: "my, model"' in line
    assert 'Note: "a: b"' in line
    assert r'Quote: "\"hi\""' in line
    assert "Plain: x y" in line
    assert r'Multi: "one\ntwo"' in line
    parsed = images.parse_infotext(images.format_infotext(info))
    assert parsed["Model"] == "my, model"
    assert parsed["Note"] == "a: b"
    assert parsed["Quote"] == '"hi"'
    assert parsed["Multi"] == "one\ntwo"


def test_non_ascii_is_not_escaped_when_quoting():
    line = images.format_infotext(_with(SD1, model_name="模型, 二")).splitlines()[-1]
    assert 'Model: "模型, 二"' in line


# --- parsing ---


def test_parse_round_trips_format():
    parsed = images.parse_infotext(images.format_infotext(SD1))
    assert parsed == {
        "Prompt": "masterpiece, a cat on a sofa",
        "Negative prompt": "blurry, lowres",
        "Steps": "20",
        "Sampler": "Euler a",
        "Schedule type": "Karras",
        "CFG scale": "7",
        "Seed": "42",
        "Size": "512x768",
        "Model hash": "6ce0161689",
        "Model": "v1-5-pruned-emaonly",
        "Clip skip": "2",
        "Version": "sdrest 0.1.0",
    }


def test_parse_multiline_prompts():
    info = _with(SD1, prompt="line one\nline two", negative_prompt="bad\nworse")
    parsed = images.parse_infotext(images.format_infotext(info))
    assert parsed["Prompt"] == "line one\nline two"
    assert parsed["Negative prompt"] == "bad\nworse"


def test_parse_a1111_docstring_example():
    parsed = images.parse_infotext(A1111_EXAMPLE)
    assert parsed["Prompt"].startswith("girl with an artist's beret, determined")
    assert parsed["Prompt"].endswith("detailed, intricate")
    assert parsed["Negative prompt"].endswith("messy drawing")
    assert parsed["Sampler"] == "Euler a"
    assert parsed["CFG scale"] == "7"
    assert parsed["Seed"] == "965400086"
    assert parsed["Size"] == "512x512"
    assert parsed["Model hash"] == "45dee52b"


def test_parse_forge_example():
    parsed = images.parse_infotext(FORGE_EXAMPLE)
    assert parsed["Prompt"] == "portrait photo <lora:flux_lora_nina1:1>"
    assert parsed["Negative prompt"] == ""
    assert parsed["Distilled CFG Scale"] == "3.5"
    assert parsed["Lora hashes"] == "flux_lora_nina1: e3b0c44298fc"
    assert parsed["Diffusion in Low Bits"] == "Automatic (fp16 LoRA)"
    assert parsed["Module 1"] == "ae"


def test_parse_prompt_only():
    assert images.parse_infotext("just a prompt, nothing else") == {
        "Prompt": "just a prompt, nothing else",
        "Negative prompt": "",
    }


# --- encoding and metadata round-trips ---


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_encode_reads_back_and_has_media_type(fmt):
    text = images.format_infotext(SD1)
    data = images.encode_image(_picture(), fmt, text)
    assert images.read_infotext(data) == text
    assert images.sniff_media_type(data) == images.media_type(fmt)
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}[fmt]
        assert image.size == (64, 48)


def test_png_parameters_chunk_is_what_pillow_and_a1111_read():
    text = images.format_infotext(SD1)
    data = images.encode_image(_picture(), "png", text)
    with Image.open(io.BytesIO(data)) as image:
        assert image.text["parameters"] == text
    assert b"tEXtparameters\x00" in data  # Latin-1 text stays a plain tEXt chunk


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_chinese_prompt_survives(fmt):
    text = images.format_infotext(_with(SD1, prompt=CHINESE, negative_prompt="模糊"))
    data = images.encode_image(_picture(), fmt, text)
    assert images.read_infotext(data) == text
    if fmt == "png":
        assert b"iTXtparameters\x00" in data
        with Image.open(io.BytesIO(data)) as image:
            assert image.text["parameters"] == text


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_exif_user_comment_is_a1111s_encoding(fmt):
    text = images.format_infotext(_with(SD1, prompt=CHINESE))
    data = images.encode_image(_picture(), fmt, text)
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        raw = exif.get_ifd(0x8769)[0x9286]
    # piexif.helper.UserComment.dump(text, encoding="unicode"), in a big-endian block as piexif.dump writes
    assert exif.endian == ">"
    assert raw == b"UNICODE\x00" + text.encode("utf-16-be")


def test_read_little_endian_and_ascii_user_comments():
    for endian, code, body in [
        ("<", b"UNICODE\x00", "猫, cat".encode("utf-16-le")),
        (">", b"ASCII\x00\x00\x00", b"plain, text"),
    ]:
        exif = Image.Exif()
        exif.endian = endian
        exif.get_ifd(0x8769)[0x9286] = code + body
        buffer = io.BytesIO()
        _picture("RGB").save(buffer, format="JPEG", exif=exif)
        assert images.read_infotext(buffer.getvalue()) == ("猫, cat" if endian == "<" else "plain, text")


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_no_infotext_reads_none(fmt):
    assert images.read_infotext(images.encode_image(_picture(), fmt, None)) is None


def test_png_drops_opaque_alpha_and_keeps_real_alpha():
    with Image.open(io.BytesIO(images.encode_image(_picture(alpha=255), "png", None))) as image:
        assert image.mode == "RGB"
    with Image.open(io.BytesIO(images.encode_image(_picture(alpha=100), "png", None))) as image:
        assert image.mode == "RGBA"
        assert image.getpixel((0, 0))[3] == 100


def test_jpeg_is_rgb_and_transparency_goes_over_white():
    clear = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    with Image.open(io.BytesIO(images.encode_image(clear, "jpeg", None))) as image:
        assert image.mode == "RGB"
        assert all(channel > 245 for channel in image.getpixel((8, 8)))


def test_quality_changes_size():
    noisy = Image.effect_noise((128, 128), 64).convert("RGB")
    assert len(images.encode_image(noisy, "jpeg", None, quality=30)) < len(images.encode_image(noisy, "jpeg", None))


def test_media_type():
    assert images.media_type("png") == "image/png"
    assert images.media_type("jpeg") == "image/jpeg"
    assert images.media_type("webp") == "image/webp"
    with pytest.raises(ValueError):
        images.media_type("gif")


def test_read_infotext_rejects_garbage():
    with pytest.raises(ImageError):
        images.read_infotext(b"not an image at all")


# --- thumbnails ---


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_thumbnail_longer_side_is_size(fmt):
    data = images.thumbnail(_encoded(fmt, (400, 300)), 100)
    assert images.sniff_media_type(data) == "image/jpeg"
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        assert image.size == (100, 75)


def test_thumbnail_portrait_and_tiny():
    with Image.open(io.BytesIO(images.thumbnail(_encoded("png", (300, 600)), 256))) as image:
        assert image.size == (128, 256)
    with Image.open(io.BytesIO(images.thumbnail(_encoded("png", (300, 600)), 1))) as image:
        assert max(image.size) == 1


def test_thumbnail_never_upscales():
    with Image.open(io.BytesIO(images.thumbnail(_encoded("png", (64, 48)), 1024))) as image:
        assert image.size == (64, 48)


def test_thumbnail_keeps_real_transparency_as_png():
    data = images.thumbnail(images.encode_image(_picture(size=(200, 100), alpha=50), "png", None), 50)
    assert images.sniff_media_type(data) == "image/png"
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "RGBA"
        assert image.size == (50, 25)


@pytest.mark.parametrize("size", [0, 1025, -5])
def test_thumbnail_size_limits(size):
    with pytest.raises(ValueError):
        images.thumbnail(_encoded("png"), size)


# --- decoding client images ---


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_decode_accepts_the_three_formats(fmt):
    image = images.decode_image(_encoded(fmt), max_pixels=64 * 48)
    assert image.size == (64, 48)
    assert image.mode == "RGB"


def test_decode_keeps_real_alpha():
    image = images.decode_image(images.encode_image(_picture(alpha=10), "png", None), max_pixels=10_000)
    assert image.mode == "RGBA"


def test_decode_normalizes_palette_images():
    buffer = io.BytesIO()
    _picture("RGB").convert("P").save(buffer, format="PNG")
    assert images.decode_image(buffer.getvalue(), max_pixels=10_000).mode == "RGB"


def test_decode_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    _picture("RGB", size=(64, 48)).save(buffer, format="JPEG", exif=exif)
    assert images.decode_image(buffer.getvalue(), max_pixels=10_000).size == (48, 64)


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"GIF89a" + b"\x00" * 40, b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\x89PNG\r\n\x1a\n"],
)
def test_decode_rejects_garbage(data):
    with pytest.raises(ImageError):
        images.decode_image(data, max_pixels=10_000)


def test_decode_rejects_other_real_formats():
    buffer = io.BytesIO()
    _picture("RGB").save(buffer, format="BMP")
    with pytest.raises(ImageError, match="PNG, JPEG or WebP"):
        images.decode_image(buffer.getvalue(), max_pixels=10_000)


def test_decode_rejects_truncated_png():
    data = _encoded("png", (256, 256))
    with pytest.raises(ImageError, match="truncated"):
        images.decode_image(data[: len(data) // 2], max_pixels=100_000)


def test_decode_rejects_a_bomb_before_decoding():
    bomb = _png_header_only(100_000, 100_000)
    assert len(bomb) < 100
    with pytest.raises(ImageError, match="too many pixels"):
        images.decode_image(bomb, max_pixels=2048 * 2048)


def test_decode_rejects_over_the_limit_below_pillows_own():
    # 5000x5000 is under Pillow's process-wide bomb limit, so only our check stands in the way.
    with pytest.raises(ImageError, match=r"5000x5000 .* limit is 4194304"):
        images.decode_image(_png_header_only(5000, 5000), max_pixels=2048 * 2048)


def test_decode_limit_is_inclusive():
    assert images.decode_image(_encoded("png", (64, 48)), max_pixels=64 * 48).size == (64, 48)
    with pytest.raises(ImageError):
        images.decode_image(_encoded("png", (64, 48)), max_pixels=64 * 48 - 1)


def test_decode_base64_with_and_without_data_url():
    data = _encoded("png")
    plain = base64.b64encode(data).decode()
    assert images.decode_base64_image(plain, max_pixels=10_000).size == (64, 48)
    assert images.decode_base64_image(f"data:image/png;base64,{plain}", max_pixels=10_000).size == (64, 48)
    assert images.decode_base64_image(plain.rstrip("="), max_pixels=10_000).size == (64, 48)
    wrapped = "\n".join(plain[i : i + 76] for i in range(0, len(plain), 76))
    assert images.decode_base64_image(wrapped, max_pixels=10_000).size == (64, 48)


@pytest.mark.parametrize(
    "text",
    ["not base64 at all!!", "data:text/plain;base64,aGVsbG8=", base64.b64encode(b"hello, not an image").decode()],
)
def test_decode_base64_rejects(text):
    with pytest.raises(ImageError):
        images.decode_base64_image(text, max_pixels=10_000)


def test_image_error_is_a_value_error():
    assert issubclass(ImageError, ValueError)
