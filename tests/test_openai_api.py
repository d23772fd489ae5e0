"""The OpenAI Images API (`/v1`) driven by the real `openai` client over a fake engine: what each call queues (the
spec the engine received), what it answers, signed URLs, streaming, and OpenAI's error shape."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from starlette.testclient import TestClient

from sdrest.auth.api_keys import KeyStore
from sdrest.auth.tokens import load_or_create_secret
from sdrest.engine import messages as m
from sdrest.engine.protocol import EventFn
from sdrest.routes import openai_files
from sdrest.specs import Img2Img, JobSpec, Txt2Img
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.test_api import make_client

SDXS = "checkpoints/sdxs.safetensors"
KONTEXT = "diffusion_models/flux-kontext-tiny.safetensors"


def _png(width: int = 64, height: int = 64, mode: str = "RGB", color: Any = 128) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


class PreviewEngine(FakeEngine):
    """The fake engine, plus a live preview (a small JPEG) after every step, as sd.cpp sends with `preview`."""

    def run(self, job_id: str, spec: JobSpec, on_event: EventFn) -> m.Done:
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (0, 90, 0)).save(buffer, format="JPEG")

        def with_previews(event: Any) -> None:
            on_event(event)
            if isinstance(event, m.Progress):
                on_event(m.PreviewImage(event.step, buffer.getvalue()))

        return super().run(job_id, spec, with_previews)


@pytest.fixture
def models(library: Library) -> Library:
    library.add("sd1-sdxs", SDXS)
    library.add("flux-tiny-diffusion-model", KONTEXT)  # the name makes it Flux Kontext, which reads references
    library.add("vae-flux-16ch", "vae/ae.safetensors")
    library.add("clip-l-text-encoder", "text_encoders/clip_l.safetensors")
    return library


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdrest.library import catalog

    monkeypatch.setattr(catalog, "sha256_file", lambda path, progress=None: "0" * 64)


@pytest.fixture
def engine() -> FakeEngine:
    return PreviewEngine()


@pytest.fixture
def client(models: Library, data_dir: Path, engine: FakeEngine) -> Iterator[TestClient]:
    with make_client(models, data_dir, engine) as client:
        client.event_hooks["request"].append(_drop_credentials)
        yield client


def openai_client(client: TestClient, **options: Any) -> openai.OpenAI:
    """The real client over the app (the TestClient is the httpx client it sends with)."""
    options = {"base_url": "http://testserver/v1", "api_key": "sdr_none", **options}
    return openai.OpenAI(http_client=client, **options)


def _drop_credentials(request: httpx.Request) -> None:
    # With auth off the server refuses credentials it cannot check, and the client always sends its key.
    request.headers.pop("Authorization", None)


@pytest.fixture
def oai(client: TestClient) -> openai.OpenAI:
    return openai_client(client, max_retries=0)


def test_generate_answers_base64_images_of_the_asked_size(oai: openai.OpenAI, engine: FakeEngine) -> None:
    result = oai.images.generate(model="sdxs", prompt="a cat", size="64x128", n=2, quality="high", style="vivid")
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json is not None and item.url is None and item.revised_prompt is None
        picture = _image(item.b64_json)
        assert (picture.format, picture.size) == ("PNG", (64, 128))
    assert (result.output_format, result.size, result.quality) == ("png", "64x128", "high")
    assert abs(result.created - time.time()) < 60
    spec = engine.specs[-1]
    assert isinstance(spec, Txt2Img) and spec.batch_count == 2 and spec.model.name == SDXS and spec.preview is None


def test_generate_with_output_format(oai: openai.OpenAI) -> None:
    result = oai.images.generate(model=SDXS, prompt="a cat", size="64x64", output_format="webp")
    assert result.data and result.data[0].b64_json and _image(result.data[0].b64_json).format == "WEBP"
    assert result.output_format == "webp"


def test_url_response_is_signed_and_expires(oai: openai.OpenAI, client: TestClient, data_dir: Path) -> None:
    result = oai.images.generate(model="sdxs", prompt="a cat", size="64x64", response_format="url")
    assert result.data and result.data[0].url
    url = result.data[0].url
    assert url.startswith("http://testserver/v1/files/") and "expires=" in url and "sig=" in url
    fetched = client.get(url)
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (64, 64)
    assert (data_dir / "url-secret").stat().st_mode & 0o777 == 0o600

    tampered = client.get(url[:-4] + ("0000" if not url.endswith("0000") else "1111"))
    assert tampered.status_code == 403
    assert tampered.json()["error"]["type"] == "permission_error"
    assert client.get(url.split("?")[0]).status_code == 403

    job_id, filename = url.split("?")[0].split("/v1/files/")[1].split("/", 1)
    past = int(time.time()) - 1
    sig = openai_files._signature(load_or_create_secret(data_dir / "url-secret"), job_id, filename, past)
    expired = client.get(f"/v1/files/{job_id}/{filename}?expires={past}&sig={sig}")
    assert expired.status_code == 403 and "expired" in expired.json()["error"]["message"]
    assert client.get(f"/v1/files/{job_id}/nope.png?expires={past + 100}&sig=x").status_code == 403


def test_sd_cpp_extra_args_in_the_prompt(oai: openai.OpenAI, engine: FakeEngine) -> None:
    oai.images.generate(
        model="sdxs", size="64x64", prompt='a cat <sd_cpp_extra_args>{"steps": 3, "seed": 7}</sd_cpp_extra_args>'
    )
    spec = engine.specs[-1]
    assert isinstance(spec, Txt2Img) and (spec.steps, spec.seed, spec.prompt) == (3, 7, "a cat")
    # sd-server's nested form too
    nested = '{"sample_params": {"sample_steps": 2, "sample_method": "euler", "guidance": {"txt_cfg": 4.5}}}'
    oai.images.generate(model="sdxs", size="64x64", prompt=f"a dog <sd_cpp_extra_args>{nested}</sd_cpp_extra_args>")
    spec = engine.specs[-1]
    assert isinstance(spec, Txt2Img)
    assert (spec.steps, spec.sampling_method, spec.cfg_scale, spec.prompt) == (2, "euler", 4.5, "a dog")


def test_native_extra_fields(oai: openai.OpenAI, engine: FakeEngine) -> None:
    extra = {"steps": 4, "seed": 9, "sampler": "euler", "negative_prompt": "blurry", "cfg_scale": 5.0}
    oai.images.generate(model="sdxs", prompt="a cat", size="64x64", extra_body=extra)
    spec = engine.specs[-1]
    assert isinstance(spec, Txt2Img)
    assert (spec.steps, spec.seed, spec.sampling_method, spec.negative_prompt, spec.cfg_scale) == (
        4, 9, "euler", "blurry", 5.0
    )  # fmt: skip


def test_unknown_model_is_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.images.generate(model="dall-e-3", prompt="a cat")
    assert caught.value.code == "model_not_found" and caught.value.param == "model"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("dall-e-3")


def test_models_list_and_retrieve(oai: openai.OpenAI) -> None:
    listed = oai.models.list()
    assert [model.id for model in listed.data] == [SDXS, KONTEXT]
    assert all(model.object == "model" and model.owned_by == "sdrest" and model.created > 0 for model in listed.data)
    assert oai.models.retrieve("sdxs").id == SDXS
    assert oai.models.retrieve(SDXS).id == SDXS


def test_error_shape(client: TestClient) -> None:
    bad_size = client.post("/v1/images/generations", json={"prompt": "a cat", "model": "sdxs", "size": "big"})
    assert bad_size.status_code == 400
    assert bad_size.json() == {
        "error": {
            "message": "Invalid size 'big': give WIDTHxHEIGHT (e.g. 512x512) or auto.",
            "type": "invalid_request_error",
            "param": "size",
            "code": "invalid_value",
        }
    }
    cases = [
        ({"prompt": "a cat", "model": "sdxs", "size": "96x96"}, "size"),  # SD 1.x needs multiples of 64
        ({"prompt": "a cat", "model": "sdxs", "n": 0}, "n"),
        ({"prompt": "a cat", "model": "sdxs", "steps": "many"}, "steps"),
        ({"prompt": "a cat", "model": "sdxs", "colour": "red"}, "colour"),
        ({"model": "sdxs"}, "prompt"),
        ({"prompt": "a cat <sd_cpp_extra_args>{nope</sd_cpp_extra_args>", "model": "sdxs"}, "prompt"),
    ]
    for body, param in cases:
        response = client.post("/v1/images/generations", json=body)
        error = response.json()["error"]
        assert response.status_code == 400 and error["type"] == "invalid_request_error", (body, error)
        assert error["param"] == param, (body, error)
    assert client.post("/v1/images/generations", content=b"{").json()["error"]["type"] == "invalid_request_error"
    wrong_method = client.delete("/v1/models")
    assert wrong_method.status_code == 405 and "GET" in wrong_method.headers["allow"]
    assert wrong_method.json()["error"]["type"] == "invalid_request_error"
    missing = client.get("/v1/nowhere")
    assert missing.status_code == 404 and set(missing.json()["error"]) == {"message", "type", "param", "code"}


def test_options_is_answered(client: TestClient) -> None:
    for path, method in [("/v1/images/generations", "POST"), ("/v1/models", "GET"), ("/v1/images/edits", "POST")]:
        response = client.options(path)
        assert response.status_code == 204 and method in response.headers["allow"], path
        assert "OPTIONS" in response.headers["allow"]


def test_with_auth_on_the_key_is_a_bearer_token_and_image_urls_are_public(models: Library, data_dir: Path) -> None:
    with make_client(models, data_dir, FakeEngine(), auth="api_key") as client:
        key, _ = KeyStore(data_dir / "auth.sqlite3", None).create("painter")
        oai = openai_client(client, api_key=key)
        result = oai.images.generate(model="sdxs", prompt="a cat", size="64x64", response_format="url")
        assert result.data and result.data[0].url
        fetched = client.get(result.data[0].url)  # without credentials, as a browser fetches an <img>
        assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
        assert oai.models.list().data
        with pytest.raises(openai.AuthenticationError):
            openai_client(client, max_retries=0).images.generate(model="sdxs", prompt="a cat", size="64x64")


def test_a_failed_job_is_a_server_error_not_retried(models: Library, data_dir: Path) -> None:
    engine = FakeEngine()
    with make_client(models, data_dir, engine) as client:
        client.event_hooks["request"].append(_drop_credentials)
        oai = openai_client(client)
        with pytest.raises(openai.InternalServerError) as caught:
            oai.images.generate(model="sdxs", prompt="fail", size="64x64")
    assert "sd.cpp said no" in caught.value.message
    assert caught.value.body["type"] == "server_error"  # type: ignore[index]
    assert len(engine.ran) == 1  # X-Should-Retry: false kept the client from trying twice more


def test_edit_one_image_is_img2img_at_the_input_size(oai: openai.OpenAI, engine: FakeEngine) -> None:
    result = oai.images.edit(model="sdxs", image=("in.png", _png(128, 64), "image/png"), prompt="a watercolour")
    assert result.data and _image(result.data[0].b64_json or "").size == (128, 64)
    spec = engine.specs[-1]
    assert isinstance(spec, Img2Img) and spec.mode == "img2img" and spec.strength == 0.75
    assert (spec.width, spec.height) == (128, 64) and Image.open(spec.init_image).size == (128, 64)
    oai.images.edit(
        model="sdxs", image=("in.png", _png(), "image/png"), prompt="x", size="64x64", extra_body={"strength": 0.3}
    )
    assert isinstance(engine.specs[-1], Img2Img) and engine.specs[-1].strength == 0.3


def test_edit_with_a_mask_inpaints_the_transparent_pixels(oai: openai.OpenAI, engine: FakeEngine) -> None:
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, 32, 64))  # the left half is transparent: repaint it
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    oai.images.edit(
        model="sdxs",
        image=("in.png", _png(), "image/png"),
        mask=("mask.png", buffer.getvalue(), "image/png"),
        prompt="a hat",
        size="64x64",
    )
    spec = engine.specs[-1]
    assert isinstance(spec, Img2Img) and spec.mode == "inpaint" and spec.mask is not None
    stored = Image.open(spec.mask)
    assert stored.getpixel((2, 32)) == 255 and stored.getpixel((61, 32)) == 0


def test_edit_with_references_on_kontext(oai: openai.OpenAI, engine: FakeEngine) -> None:
    oai.images.edit(model=KONTEXT, image=("in.png", _png(), "image/png"), prompt="make it snow", size="64x64")
    spec = engine.specs[-1]
    assert type(spec) is Txt2Img and len(spec.ref_images) == 1
    pictures = [("a.png", _png(), "image/png"), ("b.png", _png(48, 48), "image/png")]
    oai.images.edit(model="flux-kontext-tiny", image=pictures, prompt="put a in b", size="64x64")
    spec = engine.specs[-1]
    assert type(spec) is Txt2Img and len(spec.ref_images) == 2 and all(Path(p).is_file() for p in spec.ref_images)


def test_several_images_on_a_model_without_references_are_refused(oai: openai.OpenAI) -> None:
    pictures = [("a.png", _png(), "image/png"), ("b.png", _png(), "image/png")]
    with pytest.raises(openai.BadRequestError) as caught:
        oai.images.edit(model="sdxs", image=pictures, prompt="x", size="64x64")
    assert caught.value.param == "image" and "reference images" in caught.value.message


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # OpenAI's client marks variations deprecated
def test_variation_is_img2img(oai: openai.OpenAI, engine: FakeEngine) -> None:
    result = oai.images.create_variation(model="sdxs", image=("in.png", _png(), "image/png"), n=2)
    assert result.data is not None and len(result.data) == 2
    spec = engine.specs[-1]
    assert isinstance(spec, Img2Img) and spec.strength == 0.6 and spec.batch_count == 2 and spec.prompt == ""


def test_streamed_generation_sends_partials_then_the_image(oai: openai.OpenAI, engine: FakeEngine) -> None:
    engine.step_seconds = 0.05  # the stream subscribes as its answer starts: let it see the steps
    stream = oai.images.generate(
        model="sdxs", prompt="a cat", size="64x64", stream=True, partial_images=2, extra_body={"steps": 4}
    )
    events = list(stream)
    assert [e.type for e in events] == [
        "image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"
    ]  # fmt: skip
    assert [getattr(e, "partial_image_index", None) for e in events[:2]] == [0, 1]
    assert _image(events[0].b64_json).format == "PNG"  # previews come in the asked format
    final = events[-1]
    assert _image(final.b64_json).size == (64, 64) and final.size == "64x64" and final.output_format == "png"
    spec = engine.specs[-1]
    assert spec.preview is not None and spec.preview.method == "proj"  # type: ignore[union-attr]


def test_streamed_edit_without_partials(oai: openai.OpenAI) -> None:
    stream = oai.images.edit(model="sdxs", image=("in.png", _png(), "image/png"), prompt="x", size="64x64", stream=True)
    assert [e.type for e in stream] == ["image_edit.completed"]


def test_streamed_failure_is_an_error_event(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.APIError) as caught:
        list(oai.images.generate(model="sdxs", prompt="fail", size="64x64", stream=True))
    assert "sd.cpp said no" in caught.value.message


def test_refusals_by_the_auth_layer_come_in_each_familys_shape(models: Library, data_dir: Path) -> None:
    with make_client(models, data_dir, FakeEngine(), auth="api_key") as client:
        openai_401 = client.post("/v1/images/generations", json={"prompt": "a cat"})
        assert openai_401.status_code == 401 and openai_401.headers["www-authenticate"].startswith("Bearer")
        assert openai_401.json()["error"]["type"] == "authentication_error"
        assert openai_401.json()["error"]["code"] == "unauthorized" and "message" in openai_401.json()["error"]
        a1111_401 = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat"})
        assert a1111_401.status_code == 401 and a1111_401.headers["www-authenticate"].startswith("Bearer")
        assert a1111_401.json()["detail"] == "authentication required"
        native_401 = client.post("/api/v1/generate", json={"prompt": "a cat"})
        assert native_401.json()["error"] == {"code": "unauthorized", "message": "authentication required"}
        key, _ = KeyStore(data_dir / "auth.sqlite3", None).create("reader", role="guest")
        guest = {"Authorization": f"Bearer {key}"}
        openai_403 = client.post("/v1/images/generations", json={"prompt": "a cat"}, headers=guest)
        assert openai_403.status_code == 403 and openai_403.json()["error"]["type"] == "permission_error"
        a1111_403 = client.post("/sdapi/v1/txt2img", json={"prompt": "a cat"}, headers=guest)
        assert a1111_403.status_code == 403 and "needs the user role" in a1111_403.json()["detail"]
