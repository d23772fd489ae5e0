"""sdrest.inputs: decoding a client's images (base64, earlier outputs, URLs) within limits, and shaping them."""

from __future__ import annotations

import base64
import io
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple

import msgspec
import numpy as np
import pytest
from PIL import Image

from sdrest import images, inputs
from sdrest.inputs import ImageRef, InputError, Limits, Padding

JOB = "0123456789abcdef0123456789abcdef"
LIMITS = Limits(max_bytes=1_000_000, max_pixels=4096 * 4096)


def _noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    bands = len(mode)
    return Image.frombytes(mode, (width, height), os.urandom(width * height * bands))


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _bomb() -> bytes:
    """A PNG whose header declares 100000x100000 RGB pixels, with no pixel data at all."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IEND", b"")


class Outputs:
    """An OutputResolver over a dict that records every call; a missing file raises KeyError (a LookupError)."""

    def __init__(self, files: dict[tuple[str, str], bytes] | None = None) -> None:
        self.files = files or {}
        self.calls: list[tuple[str, str]] = []

    def __call__(self, job_id: str, filename: str) -> bytes:
        self.calls.append((job_id, filename))
        return self.files[(job_id, filename)]


def _refused(value: inputs.ImageInput, limits: Limits = LIMITS, outputs: Outputs | None = None) -> InputError:
    with pytest.raises(InputError) as caught:
        inputs.load_image(value, "$.init_image", limits, outputs or Outputs())
    assert caught.value.field == "$.init_image"
    assert str(caught.value).startswith("init_image: ")
    return caught.value


# --- the error and the reference struct ---


def test_input_error_names_the_field_in_words() -> None:
    error = InputError("the data is not a PNG, JPEG or WebP image", "$.ref_images[1]")
    assert isinstance(error, ValueError)
    assert error.field == "$.ref_images[1]"
    assert str(error) == error.message == "ref_images[1]: the data is not a PNG, JPEG or WebP image"


def test_image_input_decodes_from_json_in_a_request() -> None:
    class Request(msgspec.Struct, forbid_unknown_fields=True):
        images: list[inputs.ImageInput]

    body = b'{"images": ["aGk=", {"output": "j/x.png"}, {"url": "https://example.com/a.png"}]}'
    decoded = msgspec.json.decode(body, type=Request)
    assert decoded.images == ["aGk=", ImageRef(output="j/x.png"), ImageRef(url="https://example.com/a.png")]
    assert msgspec.json.encode(ImageRef(url="u")) == b'{"url":"u"}'
    for bad in (b'{"images": [{}]}', b'{"images": [{"output": "a", "url": "b"}]}', b'{"images": [{"path": "a"}]}'):
        with pytest.raises(msgspec.ValidationError, match=r"\$\.images\[0\]"):
            msgspec.json.decode(bad, type=Request)


# --- base64 ---


def test_base64_bare_and_data_url() -> None:
    picture = _noise(24, 16)
    data = _encode(picture)
    for text in (_b64(data), "data:image/png;base64," + _b64(data), _b64(data).rstrip("=")):
        image = inputs.load_image(text, "$.init_image", LIMITS, Outputs())
        assert image.size == (24, 16) and image.mode == "RGB"
        assert image.tobytes() == picture.tobytes()


def test_alpha_survives_decoding_so_a_mask_can_use_it() -> None:
    image = inputs.load_image(_b64(_encode(_noise(8, 8, "RGBA"))), "$.mask", LIMITS, Outputs())
    assert image.mode == "RGBA"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_encode(_noise(8, 8), "GIF"), "not a PNG, JPEG or WebP"),
        (b"just some text, not an image", "not a PNG, JPEG or WebP"),
        (b"", "empty"),
    ],
)
def test_only_png_jpeg_webp_are_taken(data: bytes, reason: str) -> None:
    assert reason in str(_refused(_b64(data)))


def test_bad_base64_is_refused() -> None:
    assert "not valid base64" in str(_refused("this is not base64!"))


def test_size_is_checked_from_the_base64_length_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _encode(_noise(16, 16))
    # Wrapped like MIME (76 columns) in a data URL: whitespace and padding must not count towards the size.
    wrapped = _b64(data)
    wrapped = "data:image/png;base64,\n" + "\n".join(wrapped[i : i + 76] for i in range(0, len(wrapped), 76))
    exact = Limits(max_bytes=len(data), max_pixels=LIMITS.max_pixels)
    assert inputs.load_image(wrapped, "$.init_image", exact, Outputs()).size == (16, 16)

    def never(text: str, max_pixels: int) -> Image.Image:
        raise AssertionError("decoded an image that is over the byte limit")

    monkeypatch.setattr(images, "decode_base64_image", never)
    one_less = Limits(max_bytes=len(data) - 1, max_pixels=LIMITS.max_pixels)
    error = _refused(wrapped, one_less)
    assert f"{len(data)} bytes; the limit is {len(data) - 1} bytes" in str(error)


def test_decompression_bomb_is_refused_from_its_header() -> None:
    assert "too many pixels" in str(_refused(_b64(_bomb())))


def test_more_pixels_than_the_limit_are_refused() -> None:
    small = Limits(max_bytes=LIMITS.max_bytes, max_pixels=1000)
    assert "64x64" in str(_refused(_b64(_encode(_noise(64, 64))), small))


# --- earlier outputs ---


def test_an_output_of_this_server() -> None:
    picture = _noise(10, 6)
    outputs = Outputs({(JOB, "00-42.png"): _encode(picture)})
    image = inputs.load_image(ImageRef(output=f"{JOB}/00-42.png"), "$.init_image", LIMITS, outputs)
    assert image.tobytes() == picture.tobytes()
    assert outputs.calls == [(JOB, "00-42.png")]


@pytest.mark.parametrize(
    "ref",
    [
        "../x",
        "aaa/..",
        f"{JOB}/../../etc/passwd",
        f"{JOB}/.hidden",
        f"{JOB}/..",
        f"{JOB}/a\\..\\b.png",
        f"{JOB}/a\0.png",
        f"{JOB}/",
        JOB,
        f"{JOB.upper()}/00-42.png",
        f"{JOB}0/00-42.png",
        f"/{JOB}/00-42.png",
    ],
)
def test_output_references_cannot_leave_a_job_folder(ref: str) -> None:
    outputs = Outputs()
    _refused(ImageRef(output=ref), outputs=outputs)
    assert outputs.calls == []


def test_a_missing_output_is_an_input_error() -> None:
    outputs = Outputs()
    assert "no output" in str(_refused(ImageRef(output=f"{JOB}/00-1.png"), outputs=outputs))
    assert outputs.calls == [(JOB, "00-1.png")]


def test_an_output_is_decoded_within_the_limits() -> None:
    outputs = Outputs({(JOB, "big.png"): _encode(_noise(64, 64)), (JOB, "bomb.png"): _bomb()})
    few_pixels = Limits(max_bytes=LIMITS.max_bytes, max_pixels=1000)
    assert "64x64" in str(_refused(ImageRef(output=f"{JOB}/big.png"), few_pixels, outputs))
    assert "too many pixels" in str(_refused(ImageRef(output=f"{JOB}/bomb.png"), outputs=outputs))
    few_bytes = Limits(max_bytes=100, max_pixels=LIMITS.max_pixels)
    assert "the limit is 100 bytes" in str(_refused(ImageRef(output=f"{JOB}/big.png"), few_bytes, outputs))


# --- URLs ---

PICTURE = _noise(12, 9)
URLS_ON = Limits(max_bytes=100_000, max_pixels=LIMITS.max_pixels, allow_urls=True, url_timeout=5.0)


class _Handler(BaseHTTPRequestHandler):
    stop: threading.Event
    finished: threading.Event  # set when a request's handler has returned
    streamed = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should once it has read enough
        finally:
            self.finished.set()

    def _route(self) -> None:
        if self.path == "/picture.png":
            self._send(200, {"Content-Length": str(len(PNG))}, PNG)
        elif self.path == "/redirect-to-file":
            self._send(302, {"Location": "file:///etc/passwd", "Content-Length": "0"})
        elif self.path == "/declares-too-much":
            self._send(200, {"Content-Length": str(10**9)}, b"\0" * 1000)
        elif self.path == "/endless":  # no Content-Length: only the bytes read tell the client it is too big
            self._send(200, {})
            while not self.stop.is_set() and type(self).streamed < 10**9:
                self.wfile.write(b"\0" * 65536)
                type(self).streamed += 65536
        elif self.path == "/dribble":  # a byte before each timeout runs out, for 3 s at most
            self._send(200, {"Content-Length": "100000"})
            for _ in range(60):
                if self.stop.wait(0.05):
                    break
                self.wfile.write(b"\0")
                self.wfile.flush()
        elif self.path == "/silent":  # headers, then nothing for 3 s
            self._send(200, {"Content-Length": "100000"})
            self.wfile.flush()
            self.stop.wait(3)
        elif self.path.startswith("/redirect?"):
            self._send(302, {"Location": self.path.partition("?")[2], "Content-Length": "0"})
        else:
            self._send(404, {"Content-Length": "0"})

    def _send(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


PNG = _encode(PICTURE)


class Server(NamedTuple):
    url: str
    handler: type[_Handler]


@pytest.fixture
def local(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A local HTTP server for one test, stopped (with any handler still streaming) when the test ends."""
    monkeypatch.setenv("no_proxy", "*")
    stop = threading.Event()
    handler = type("Handler", (_Handler,), {"stop": stop, "finished": threading.Event(), "streamed": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Server(f"http://127.0.0.1:{httpd.server_port}", handler)
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(local: Server) -> str:
    return local.url


def test_urls_are_refused_when_off() -> None:
    error = _refused(ImageRef(url="http://169.254.169.254/latest/meta-data"))
    assert "server-side request forgery" in str(error) and "allow_input_urls = true" in str(error)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/a.png", "data:image/png;base64,AAAA", "http:///a.png", "x"]
)
def test_only_http_and_https_urls(url: str) -> None:
    assert "only http:// and https://" in str(_refused(ImageRef(url=url), URLS_ON))


def test_an_image_from_a_url(server: str) -> None:
    image = inputs.load_image(ImageRef(url=f"{server}/picture.png"), "$.init_image", URLS_ON, Outputs())
    assert image.tobytes() == PICTURE.tobytes()


def test_a_redirect_cannot_reach_a_file(server: str) -> None:
    error = _refused(ImageRef(url=f"{server}/redirect-to-file"), URLS_ON)
    assert "127.0.0.1" in str(error) and "302" in str(error)


def test_a_redirect_cannot_reach_another_scheme(server: str) -> None:
    with socket.socket() as listener:  # where an FTP client would connect, if there were one
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        target = f"ftp://127.0.0.1:{listener.getsockname()[1]}/a.png"
        _refused(ImageRef(url=f"{server}/redirect?{target}"), URLS_ON)
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_a_declared_size_over_the_limit_is_refused_unread(server: str) -> None:
    assert "larger than the limit of 100000 bytes" in str(
        _refused(ImageRef(url=f"{server}/declares-too-much"), URLS_ON)
    )


def test_an_endless_body_is_read_only_to_the_limit(local: Server) -> None:
    assert "larger than the limit of 100000 bytes" in str(_refused(ImageRef(url=f"{local.url}/endless"), URLS_ON))
    # The client hung up after the limit, so the server's writes failed long before its gigabyte was sent.
    assert local.handler.finished.wait(5)
    assert local.handler.streamed < 64 * 2**20


def test_a_slow_download_stops_at_the_timeout(server: str) -> None:
    quick = Limits(max_bytes=URLS_ON.max_bytes, max_pixels=LIMITS.max_pixels, allow_urls=True, url_timeout=0.5)
    started = time.monotonic()
    error = _refused(ImageRef(url=f"{server}/dribble"), quick)
    assert "127.0.0.1" in str(error) and "took too long" in str(error)
    assert time.monotonic() - started < 2


def test_a_silent_server_times_out(server: str) -> None:
    quick = Limits(max_bytes=URLS_ON.max_bytes, max_pixels=LIMITS.max_pixels, allow_urls=True, url_timeout=0.5)
    started = time.monotonic()
    error = _refused(ImageRef(url=f"{server}/silent"), quick)
    assert "could not fetch the image from 127.0.0.1: timed out" in str(error)
    assert time.monotonic() - started < 2


def test_network_errors_name_the_host(server: str) -> None:
    assert "HTTP 404" in str(_refused(ImageRef(url=f"{server}/nothing-here.png"), URLS_ON))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the fetch: nobody listens there
    error = _refused(ImageRef(url=f"http://127.0.0.1:{port}/a.png"), URLS_ON)
    assert "could not fetch the image from 127.0.0.1" in str(error)


# --- shaping ---


def test_fit_warns_only_when_it_resizes() -> None:
    picture = _noise(32, 24)
    same, warning = inputs.fit(picture, 32, 24, "$.init_image")
    assert warning is None and same.tobytes() == picture.tobytes()
    resized, warning = inputs.fit(picture, 64, 64, "$.init_image")
    assert resized.size == (64, 64) and resized.mode == "RGB"
    assert warning == "$.init_image was 32x24; resized to 64x64"


def test_fit_keeps_masks_grey_and_flattens_transparency_over_white() -> None:
    assert inputs.fit(_noise(8, 8, "L"), 16, 16, "$.mask")[0].mode == "L"
    clear = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    flat, _ = inputs.fit(clear, 4, 4, "$.init_image")
    assert flat.mode == "RGB" and flat.getpixel((1, 1)) == (255, 255, 255)


def test_mask_from_alpha_edits_the_transparent_area() -> None:
    mask = Image.new("RGBA", (16, 8), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 8, 8))  # transparent left half: edit it
    mask.putpixel((12, 4), (0, 0, 0, 100))
    levels, warning = inputs.prepare_mask(mask, 16, 8, "$.mask")
    assert warning is None and levels.mode == "L"
    assert levels.getpixel((2, 2)) == 255 and levels.getpixel((14, 2)) == 0
    assert levels.getpixel((12, 4)) == 155


def test_an_opaque_mask_uses_its_grey_levels() -> None:
    mask = Image.new("RGBA", (8, 8), (200, 200, 200, 255))
    assert inputs.prepare_mask(mask, 8, 8, "$.mask")[0].getpixel((3, 3)) == 200
    assert inputs.prepare_mask(mask.convert("RGB"), 8, 8, "$.mask")[0].getpixel((3, 3)) == 200


def test_mask_invert_and_resize() -> None:
    grey = _noise(8, 8, "L")
    inverted, warning = inputs.prepare_mask(grey, 8, 8, "$.mask", invert=True)
    assert warning is None
    assert list(inverted.tobytes()) == [255 - x for x in grey.tobytes()]
    resized, warning = inputs.prepare_mask(grey, 16, 16, "$.mask")
    assert resized.size == (16, 16) and warning == "$.mask was 8x8; resized to 16x16"


def test_mask_blur_softens_the_edge() -> None:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))
    sharp, _ = inputs.prepare_mask(mask, 64, 64, "$.mask")
    assert set(sharp.tobytes()) == {0, 255}
    soft, _ = inputs.prepare_mask(mask, 64, 64, "$.mask", blur=4)
    row = np.asarray(soft)[10]
    assert 0 < row[31] < row[32] < 255
    assert row[2] == 0 and row[61] == 255


# --- outpainting ---


def test_outpaint_canvas_grows_and_replicates_the_edges() -> None:
    picture = _noise(20, 12)
    canvas, mask = inputs.outpaint_canvas(picture, Padding(left=5, top=3), 8, blur=0, overlap=4)
    # 20+5 rounds up to 32 (7 more on the right), 12+3 to 16 (1 more at the bottom).
    assert canvas.size == mask.size == (32, 16)
    assert canvas.mode == "RGB" and mask.mode == "L"
    expected = np.pad(np.asarray(picture), ((3, 1), (5, 7), (0, 0)), mode="edge")
    assert np.array_equal(np.asarray(canvas), expected)
    assert canvas.crop((5, 3, 25, 15)).tobytes() == picture.tobytes()

    levels = np.asarray(mask)
    inside = np.zeros((16, 32), dtype=bool)
    inside[3:15, 5:25] = True
    assert (levels[~inside] == 255).all()
    kept = np.zeros((16, 32), dtype=bool)
    kept[3 + 4 : 15 - 4, 5 + 4 : 25 - 4] = True  # every side was extended, so the overlap runs all round
    assert (levels[kept] == 0).all() and (levels[inside & ~kept] == 255).all()


def test_outpaint_overlap_only_on_extended_sides() -> None:
    _, mask = inputs.outpaint_canvas(_noise(16, 16), Padding(right=16), 16, blur=0, overlap=4)
    levels = np.asarray(mask)
    assert mask.size == (32, 16)
    assert (levels[:, :12] == 0).all() and (levels[:, 12:] == 255).all()


def test_outpaint_mask_blur_stays_inside_the_original() -> None:
    _, mask = inputs.outpaint_canvas(_noise(128, 64), Padding(left=32, right=32), 8)
    levels = np.asarray(mask)
    assert (levels[:, :32] == 255).all() and (levels[:, 160:] == 255).all()
    assert (levels[:, 88:104] == 0).all()  # deep inside
    seam = levels[10, 32:48]
    assert 0 < seam.min() < seam.max() <= 255 and (np.diff(seam.astype(int)) <= 0).all()


def test_outpaint_needs_a_side() -> None:
    with pytest.raises(InputError) as caught:
        inputs.outpaint_canvas(_noise(8, 8), Padding(), 8)
    assert caught.value.field == "$.outpaint"
    assert str(caught.value) == "outpaint: give at least one side to extend"


def test_padding_limits() -> None:
    assert msgspec.json.decode(b'{"top": 64}', type=Padding) == Padding(top=64)
    for bad in (b'{"left": -1}', b'{"left": 2049}', b'{"up": 8}'):
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(bad, type=Padding)


def test_png_bytes_are_lossless() -> None:
    picture = _noise(20, 10)
    data = inputs.png_bytes(picture)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert Image.open(io.BytesIO(data)).tobytes() == picture.tobytes()
