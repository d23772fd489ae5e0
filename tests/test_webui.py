"""The bundled web UI in a real browser (Playwright driving Debian's chromium) against a real server with a fake engine:
every mode reaches the engine as its job kind, live progress and previews, cancelling, a painted inpainting mask,
the gallery, model loading, a download with cancel, login and roles, themes, errors next to their fields, layouts
from 360 to 2560 px, labels, and how the files are served (size, compression, caching, first-screen time).

Every test fails on a console error, a failed request or an HTTP error it did not expect. Screenshots go to
`$SDREST_SCREENSHOTS` (else a temporary folder); with `SDREST_UPDATE_SCREENSHOTS=1` the generate page and the gallery
are also copied to docs/screenshots/ for the README.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from sdrest import access
from sdrest.cli import main as cli
from sdrest.specs import Img2Img, Load, Txt2Img, Upscale, Video
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.fixtures import real, synthetic
from tests.hub_standin import HubStandin
from tests.webui_helpers import (
    WEBUI,
    PreviewingEngine,
    Problems,
    chromium_path,
    make_library,
    png,
    ui_server,
    wait_until,
)

pytestmark = pytest.mark.slow  # a minute of browser or fuzzing: not in the fast lane

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the web UI tests need Playwright (pip install playwright)"
)
CHROMIUM = chromium_path()
if CHROMIUM is None:
    pytest.skip("the web UI tests need chromium (apt-get install chromium)", allow_module_level=True)

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"
PHONE, DESKTOP = 390, 1440


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The header-only files are sparse and large: hashing them for the infotext is not what these tests are about."""
    from sdrest.library import catalog

    monkeypatch.setattr(catalog, "sha256_file", lambda path, progress=None: "0" * 64)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def library(tmp_path: Path) -> Library:
    return make_library(tmp_path / "models")


class Served:
    """A running server: its URL, its engine, its library and data directory."""

    def __init__(self, url: str, engine: FakeEngine, library: Library, data_dir: Path) -> None:
        self.url, self.engine, self.library, self.data_dir = url, engine, library, data_dir

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/api/v1/{path}", json=body)
        assert response.status_code == 202, response.text
        data: dict[str, Any] = response.json()
        return data

    def job(self, job_id: str) -> dict[str, Any]:
        data: dict[str, Any] = httpx.get(f"{self.url}/api/v1/jobs/{job_id}").json()
        return data


@pytest.fixture
def serve(library: Library, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """`serve(engine=..., **settings)`: start the server (stopped at the end of the test)."""
    with ExitStack() as stack:

        def start(engine: FakeEngine | None = None, **settings: Any) -> Served:
            engine = engine or PreviewingEngine()
            url = stack.enter_context(ui_server(library, tmp_path / "data", engine, **settings))
            return Served(url, engine, library, tmp_path / "data")

        yield start


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., tuple[Any, Problems]]]:
    """`open_page(url, width=...)`: a fresh browser context and page; at the end, no unexpected problems."""
    contexts: list[tuple[Any, Problems]] = []

    def new(url: str | None = None, width: int = DESKTOP, height: int = 900, **options: Any) -> tuple[Any, Problems]:
        # Reduced motion: no smooth scrolling under the test's pointer.
        options.setdefault("reduced_motion", "reduce")
        context = browser.new_context(viewport={"width": width, "height": height}, **options)
        page = context.new_page()
        page.set_default_timeout(10_000)
        problems = Problems(page)
        contexts.append((context, problems))
        if url is not None:
            page.goto(url + "/")
            page.wait_for_selector("#gen-btn:not([disabled])")
        return page, problems

    yield new
    for context, problems in contexts:
        context.close()
        problems.check()


def screenshots() -> Path:
    folder = Path(os.environ.get("SDREST_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "sdrest-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def shoot(page: Any, name: str, readme: str | None = None) -> Path:
    """Save a screenshot of the viewport; with SDREST_UPDATE_SCREENSHOTS=1 also as docs/screenshots/<readme>."""
    path = screenshots() / f"{name}.png"
    page.screenshot(path=str(path))
    if readme and os.environ.get("SDREST_UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots" / readme
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return path


def choose_image(page: Any, slot: str, data: bytes, name: str = "input.png") -> None:
    page.set_input_files(
        f"#slot-{slot} input[type=file]", files=[{"name": name, "mimeType": "image/png", "buffer": data}]
    )
    page.wait_for_selector(f"#slot-{slot}.filled")


def wait_js(page: Any, expression: str) -> None:
    """Wait until `expression` is true in the page (polled from here: the UI's CSP forbids the eval that Playwright's
    wait_for_function uses)."""
    wait_until(lambda: bool(page.evaluate(expression)))


def wait_for_spec(engine: FakeEngine, count: int) -> Any:
    wait_until(lambda: len(engine.specs) >= count)
    return engine.specs[count - 1]


# -- serving ----------------------------------------------------------------------------------------------------------


def test_the_ui_is_small_compressed_and_revalidated(serve: Callable[..., Served]) -> None:
    files = [p for p in WEBUI.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    print(f"\nweb UI: {len(files)} files, {total / 1024:.1f} KiB uncompressed")
    assert total < 400 * 1024
    served = serve()
    with httpx.Client(base_url=served.url) as client:
        for path, kind in (("/", "text/html"), ("/ui/main.js", "javascript"), ("/ui/app.css", "text/css")):
            response = client.get(path, headers={"Accept-Encoding": "gzip"})
            assert response.status_code == 200
            assert response.headers["content-encoding"] == "gzip", path
            assert kind in response.headers["content-type"]
            assert response.headers["cache-control"] == "no-cache"
            assert "default-src 'self'" in response.headers["content-security-policy"]
            etag = response.headers["etag"]
            again = client.get(path, headers={"If-None-Match": etag})
            assert again.status_code == 304 and again.headers["cache-control"] == "no-cache"
        # The API is not behind the UI's gzip (SSE must stream), and it still wins over the UI's catch-all mount.
        health = client.get("/api/v1/health", headers={"Accept-Encoding": "gzip"})
        assert health.status_code == 200 and "content-encoding" not in health.headers
        assert client.get("/nothing-here.js").status_code == 404


def test_the_first_screen_is_usable_within_a_second(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(width=PHONE)
    page.goto(served.url + "/")
    page.wait_for_selector("#gen-btn:not([disabled])")
    timing = page.evaluate(
        """() => {
            const nav = performance.getEntriesByType("navigation")[0];
            const ready = performance.getEntriesByName("sdrest-ready")[0];
            return {dcl: nav.domContentLoadedEventEnd, load: nav.loadEventEnd, ready: ready.startTime};
        }"""
    )
    print(f"\nfirst screen: DOMContentLoaded {timing['dcl']:.0f} ms, load {timing['load']:.0f} ms, "
          f"Generate enabled {timing['ready']:.0f} ms after navigation start")  # fmt: skip
    assert timing["ready"] < 1000


# -- generating -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_generate_shows_progress_and_previews_then_the_image(
    serve: Callable[..., Served], open_page: Callable, width: int
) -> None:
    served = serve(PreviewingEngine(step_seconds=0.2))
    page, _ = open_page(served.url, width=width)
    page.select_option("#f-model", "diffusion_models/flux-tiny.safetensors")
    assert page.input_value("#f-width") == "1024" and page.get_attribute("#f-width", "step") == "16"
    assert page.is_visible("#f-guidance") and not page.is_visible("#f-clip-skip")
    page.fill("#f-width", "500")
    page.dispatch_event("#f-width", "change")
    assert page.input_value("#f-width") == "496"  # snapped to the model's multiple of 16
    page.fill("#f-width", "256")
    page.fill("#f-height", "256")
    page.fill("#f-steps", "6")
    page.fill("#f-prompt", "a lighthouse at dusk, oil painting")
    page.wait_for_selector("#estimate:has-text('no timing yet for this model')")  # POST /estimate, nothing run yet
    page.focus("#f-prompt")
    page.keyboard.press("Control+Enter")
    numbers = page.wait_for_selector("#current .job-numbers:has-text('it/s')").text_content()
    assert "ETA" in numbers and "of 6" in numbers
    page.wait_for_selector("#current .preview:not([hidden])")
    assert page.get_attribute("#current .preview", "src").startswith("data:image/jpeg;base64,")
    page.wait_for_selector("#current .output img")
    assert page.evaluate("document.querySelector('#current progress').value") == 1
    assert "Step 6 of 6" in page.text_content("#current .job-numbers")
    spec = served.engine.specs[-1]
    assert isinstance(spec, Txt2Img) and (spec.width, spec.height, spec.steps) == (256, 256, 6)
    assert spec.preview is not None and spec.preview.method == "proj"
    page.wait_for_selector(".toast.ok")
    page.wait_for_selector("#estimate:has-text('about 1.')")  # 6 steps of 0.2 s: from the job just done
    page.click("#seed-last")
    assert page.input_value("#f-seed") == str(spec.seed)
    page.evaluate(
        "window.scrollTo(0, 0)" if width == DESKTOP else "document.querySelector('#current').scrollIntoView()"
    )
    shoot(page, f"generate-{width}", readme="generate.png" if width == DESKTOP else None)


def test_the_queue_shows_positions_and_cancels_queued_and_running_jobs(
    serve: Callable[..., Served], open_page: Callable
) -> None:
    served = serve(PreviewingEngine(slow_seconds=0.3))
    page, _ = open_page(served.url)
    page.fill("#f-steps", "40")
    page.fill("#f-prompt", "a slow sunrise")
    page.click("#gen-btn")
    page.wait_for_selector("text=Step 2 of 40")
    page.fill("#f-steps", "2")
    for prompt in ("quick one", "quick two"):
        page.fill("#f-prompt", prompt)
        page.click("#gen-btn")
    page.wait_for_selector("#queue-list li:has-text('#2')")
    rows = page.locator("#queue-list li")
    assert rows.count() == 3 and "a slow sunrise" in rows.nth(0).text_content()
    assert "#1" in rows.nth(1).text_content() and "quick one" in rows.nth(1).text_content()
    page.click("#queue-list li:has-text('quick two') button")  # a queued job: removed at once
    page.wait_for_selector("#queue-list li:has-text('quick two')", state="detached")
    page.click("#current .job-line button:has-text('Cancel')")  # the running one: stopped
    page.wait_for_selector(".toast:has-text('Cancelled: “a slow sunrise”')")
    page.wait_for_selector(".toast.ok:has-text('Done: “quick one”')")
    page.wait_for_selector("#queue-empty:not([hidden])")
    jobs = httpx.get(f"{served.url}/api/v1/jobs").json()["jobs"]
    assert {j["params"]["prompt"]: j["status"] for j in jobs} == {
        "a slow sunrise": "cancelled",
        "quick one": "completed",
        "quick two": "cancelled",
    }


def test_inpainting_sends_the_painted_mask(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(served.url)
    page.check("input[name=mode][value=inpaint]")
    choose_image(page, "init", png(256, 256))
    assert page.input_value("#f-width") == "512"  # the model's area in the image's aspect
    page.fill("#f-prompt", "a red hat")
    page.click("#gen-btn")  # nothing painted yet: refused here, next to the mask tools
    page.wait_for_selector(".mask-tools .field-error:has-text('Paint the area')")
    assert served.engine.specs == []
    box = page.locator("#slot-init canvas.mask").bounding_box()
    page.fill("#f-brush", "40")
    page.dispatch_event("#f-brush", "input")
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=8)
    page.mouse.up()
    page.click("#gen-btn")
    spec = wait_for_spec(served.engine, 1)
    assert isinstance(spec, Img2Img) and spec.mask is not None and spec.mode == "inpaint"
    mask = Image.open(spec.mask).convert("L")
    assert mask.size == (512, 512)
    assert mask.getpixel((185, 256)) == 255  # painted: repainted
    assert mask.getpixel((480, 40)) == 0  # not painted: kept


def test_every_mode_reaches_the_engine_as_its_kind(
    serve: Callable[..., Served], open_page: Callable, library: Library
) -> None:
    library.link(synthetic.build(synthetic.get_case("wan21-t2v-1.3b")), "diffusion_models/wan-t2v.safetensors")
    library.link(synthetic.build(synthetic.get_case("wan21-vae")), "vae/wan_2.1_vae.safetensors")
    library.link(synthetic.build(synthetic.get_case("umt5-xxl")), "text_encoders/umt5_xxl.safetensors")
    served = serve()
    page, _ = open_page(served.url)
    engine = served.engine
    page.fill("#f-prompt", "a castle")
    page.fill("#f-steps", "2")

    page.click("summary:has-text('Hires fix')")
    page.check("#f-hires-on")
    page.select_option("#f-hires-upscaler", "esrgan/x4.safetensors")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 1)
    assert isinstance(spec, Txt2Img) and spec.hires is not None and spec.hires.width == 1024
    page.uncheck("#f-hires-on")

    page.click("summary:has-text('ControlNet')")
    choose_image(page, "control", png(64, 64))
    page.select_option("#f-control-model", "controlnet/canny-sd15.safetensors")
    page.check("#f-control-canny")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 2)
    assert spec.control is not None and spec.control.canny
    page.uncheck("#f-control-on")

    page.check("input[name=mode][value=outpaint]")
    assert not page.is_visible("#f-width") and not page.is_visible("summary:has-text('Hires fix')")
    choose_image(page, "init", png(512, 512))
    page.fill("#f-out-right", "128")
    page.dispatch_event("#f-out-right", "input")
    assert "Result: 640×512" in page.text_content("#outpaint-hint")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 3)
    assert isinstance(spec, Img2Img) and spec.mode == "outpaint" and (spec.width, spec.height) == (640, 512)

    page.check("input[name=mode][value=img2img]")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 4)
    assert isinstance(spec, Img2Img) and spec.mode == "img2img" and spec.strength == 0.75

    page.check("input[name=mode][value=upscale]")
    assert not page.is_visible("#f-prompt") and page.is_visible("#f-up-model")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 5)
    assert isinstance(spec, Upscale) and spec.model.name == "esrgan/x4.safetensors"

    page.check("input[name=mode][value=txt2img]")
    assert not page.is_visible("[data-mode=video]")
    page.select_option("#f-model", "diffusion_models/wan-t2v.safetensors")
    assert page.is_checked("input[name=mode][value=video]")
    assert not page.is_visible("[data-mode=inpaint]") and page.is_visible("#f-frames")
    assert page.input_value("#f-width") == "480"
    page.fill("#f-frames", "5")
    page.fill("#f-prompt", "waves at dusk")
    page.click("#gen-btn")
    spec = wait_for_spec(engine, 6)
    assert isinstance(spec, Video) and spec.frames == 5


def test_the_servers_errors_show_next_to_their_field(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve(max_pixels=300_000)
    page, problems = open_page(served.url)
    problems.allow(r"422")  # the refusals this test provokes (the console logs the failed requests too)
    page.select_option("#f-model", "checkpoints/sdxs.safetensors")
    page.fill("#f-prompt", "a cat")
    page.fill("#f-height", "640")
    page.click("#gen-btn")
    error = page.wait_for_selector("[data-field=width] .field-error")  # $.width
    assert "pixel limit" in error.text_content()
    assert page.get_attribute("#f-width", "aria-invalid") == "true"
    page.fill("#f-width", "448")  # editing the field clears its error
    page.wait_for_selector("[data-field=width] .field-error", state="detached")
    page.click("summary:has-text('LoRAs and embeddings')")
    page.select_option("#f-lora-pick", "lora/pixel.safetensors")
    page.click("#lora-add")
    page.click("#gen-btn")
    error = page.wait_for_selector("#lora-list .chip .field-error")  # $.loras[0].name
    assert "cannot apply" in error.text_content()
    assert page.get_attribute("#lora-w-0", "aria-invalid") == "true"
    assert served.engine.specs == []


def test_advanced_decoder_and_step_cache_reach_the_engine(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, problems = open_page(served.url)
    page.select_option("#f-model", "diffusion_models/flux-tiny.safetensors")
    page.fill("#f-prompt", "a lighthouse")
    page.fill("#f-width", "256")
    page.fill("#f-height", "256")
    page.click("summary:has-text('Advanced')")
    page.select_option("#f-vae", "vae/ae.safetensors")
    page.select_option("#f-cache", "easycache")
    page.click("#gen-btn")
    spec = wait_for_spec(served.engine, 1)
    assert isinstance(spec, Txt2Img) and spec.cache is not None and spec.cache.mode == "easycache"
    assert spec.vae == "vae/ae.safetensors" and spec.model.plan["vae_path"].endswith("vae/ae.safetensors")
    problems.allow(r"422")  # no TAESD in this library: refused, next to the field
    page.select_option("#f-decode", "taesd")
    page.click("#gen-btn")
    assert "no TAESD" in page.wait_for_selector("[data-field=decode] .field-error").text_content()


def test_presets_and_prompt_templates(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(served.url)
    page.click(".tabs a[data-tab=models]")
    page.select_option("#p-kind", "prompts")
    page.fill("#p-name", "castle")
    page.fill("#p-value", "a castle on a hill, golden hour")
    page.click("button:has-text('Save as new')")
    page.wait_for_selector("#p-names option[value=castle]", state="attached")
    page.fill("#p-value", "a castle in the fog")
    page.click("button:has-text('Replace')")
    page.wait_for_selector(".toast.ok:has-text('Saved castle') >> nth=1")
    assert httpx.get(f"{served.url}/api/v1/prompts/castle").json()["value"] == "a castle in the fog"
    page.click(".tabs a[data-tab=generate]")
    page.click("summary:has-text('Advanced')")
    page.fill("#f-steps", "7")
    page.fill("#f-preset-name", "quick")
    page.click("#preset-save")
    page.wait_for_selector("#f-preset option[value=quick]", state="attached")
    assert httpx.get(f"{served.url}/api/v1/presets/quick").json()["value"]["steps"] == 7
    page.fill("#f-steps", "30")
    page.select_option("#f-preset", "quick")
    page.click("#preset-apply")
    wait_js(page, "document.querySelector('#f-steps').value === '7'")
    page.wait_for_selector("#f-prompt-tpl option[value=castle]", state="attached")
    page.select_option("#f-prompt-tpl", "castle")
    wait_js(page, "document.querySelector('#f-prompt').value === 'a castle in the fog'")


# -- gallery ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_gallery_reuses_a_jobs_parameters(serve: Callable[..., Served], open_page: Callable, width: int) -> None:
    served = serve()
    prompts = ["a red fox in the snow", "a lighthouse at dusk", "a bowl of ramen", "a castle on a hill", "koi pond"]
    ids = []
    for i, prompt in enumerate(prompts):
        body = {"prompt": prompt, "seed": 1000 + i, "width": 256, "height": 256 + 64 * (i % 2), "steps": 2,
                "model": "sdxs", "batch_count": 2 if i == 1 else 1}  # fmt: skip
        ids.append(served.post("generate", body)["id"])
    wait_until(lambda: all(served.job(i)["status"] == "completed" for i in ids))
    page, _ = open_page(served.url, width=width)
    page.click(".tabs a[data-tab=gallery]")
    page.wait_for_selector(".tile img")
    assert page.locator(".tile").count() == 5
    assert page.get_attribute(".tile img", "loading") == "lazy"
    assert "thumb=1&size=256" in page.get_attribute(".tile img", "src")
    wait_js(page, "[...document.querySelectorAll('.tile img')].every(i => i.complete && i.naturalWidth)")
    shoot(page, f"gallery-{width}", readme="gallery.png" if width == DESKTOP else None)
    page.fill("#g-search", "fox")
    wait_js(page, "document.querySelectorAll('.tile').length === 1")
    page.click(".tile")
    page.wait_for_selector("#detail[open] .output img")
    wait_js(page, "[...document.querySelectorAll('#detail img')].every(i => i.complete && i.naturalWidth)")
    shoot(page, f"gallery-detail-{width}")
    page.click("#detail button:has-text('Reuse parameters')")
    page.wait_for_selector("#view-generate:not([hidden])")
    assert page.input_value("#f-prompt") == "a red fox in the snow"
    assert page.input_value("#f-seed") == "1000"
    assert page.input_value("#f-model") == "checkpoints/sdxs.safetensors"


def test_gallery_filters_pages_and_deletes(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    tiny = {"width": 64, "height": 64, "steps": 1}
    ids = [served.post("generate", {**tiny, "prompt": f"tile {i}", "model": "sdxs"})["id"] for i in range(26)]
    ids.append(served.post("generate", {**tiny, "prompt": "flux one", "model": "flux-tiny", "batch_count": 2})["id"])
    wait_until(lambda: all(served.job(i)["status"] == "completed" for i in ids), seconds=20)
    page, _ = open_page(served.url + "/#gallery")
    page.goto(served.url + "/#gallery")
    page.wait_for_selector(".tile")
    assert page.locator(".tile").count() == 24 and page.text_content("#g-page") == "Page 1 of 2"
    page.click("#g-next")
    wait_js(page, "document.querySelectorAll('.tile').length === 3")
    page.click("#g-prev")
    page.select_option("#g-model", "diffusion_models/flux-tiny.safetensors")
    wait_js(page, "document.querySelectorAll('.tile').length === 1")
    page.click(".tile")
    with page.expect_download() as download:
        page.click("#detail button:has-text('Download all')")
    with zipfile.ZipFile(download.value.path()) as archive:
        names = archive.namelist()
        assert len(names) == 2 and all(Image.open(archive.open(n)).size == (64, 64) for n in names)
    page.click("#detail button:has-text('Delete')")
    page.click("#detail button:has-text('Really delete?')")
    page.wait_for_selector("#detail", state="hidden")
    wait_until(lambda: httpx.get(f"{served.url}/api/v1/jobs/{ids[-1]}").status_code == 404)
    page.wait_for_selector("#g-empty:not([hidden])")


# -- models -----------------------------------------------------------------------------------------------------------


def test_models_load_inspect_hash_and_the_system_page(
    serve: Callable[..., Served], open_page: Callable, library: Library
) -> None:
    library.link(synthetic.build(synthetic.get_case("wan21-t2v-1.3b")), "diffusion_models/wan-t2v.safetensors")
    served = serve()
    page, _ = open_page(served.url)
    page.click(".tabs a[data-tab=models]")
    wan = page.locator(".mrow", has_text="wan-t2v")
    assert "Missing: wan-t2v (Wan 2.1 T2V) needs" in wan.text_content()  # its plan_error
    assert wan.locator("button:has-text('Load')").count() == 0
    page.locator(".mrow", has_text="pixel").locator("button:has-text('Hash')").click()
    page.wait_for_selector("#m-tasks .task.completed:has-text('Hash pixel')")
    row = page.locator(".mrow", has_text="flux-tiny")
    assert "no t5xxl in the library" in row.text_content()
    row.locator("button:has-text('Load')").click()
    page.wait_for_selector("#m-tasks .task.completed")
    spec = served.engine.specs[-1]
    assert isinstance(spec, Load) and spec.model.name == "diffusion_models/flux-tiny.safetensors"
    page.wait_for_selector("#m-loaded:has-text('flux-tiny')")
    row.locator("button:has-text('Inspect')").click()
    page.wait_for_selector("#detail[open] h3:has-text('Loading plan')")
    assert "vae/ae.safetensors" in page.text_content("#detail")
    page.keyboard.press("Escape")
    page.select_option("#m-role", "lora")
    assert page.locator(".mrow").count() == 1
    # A model dropped into the library and found by Rescan is offered on the Generate form too.
    library.add("sd1-sdxs", "checkpoints/extra.safetensors")
    page.click("button:has-text('Rescan')")
    page.wait_for_selector("#f-model option[value='checkpoints/extra.safetensors']", state="attached")
    page.click(".tabs a[data-tab=system]")
    page.wait_for_selector("#s-health dd:has-text('ok')")
    assert "flux-tiny" in page.text_content("#s-health")
    page.wait_for_selector("#s-machine .meter progress")
    assert "memory" in page.text_content("#s-machine")


def test_download_from_the_hub_with_progress_and_cancel(
    serve: Callable[..., Served], open_page: Callable, monkeypatch: pytest.MonkeyPatch, library: Library
) -> None:
    lora = real.build("lora-sd1-kohya-r4", weights=False).read_bytes()
    with HubStandin({"acme/pixel-lora": {"pixel.safetensors": lora}}, slow=0.02) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)  # before the server starts
        served = serve()
        before = sorted(p.name for p in library.root.rglob("*") if p.is_file())
        page, _ = open_page(served.url)
        page.click(".tabs a[data-tab=models]")
        page.fill("#m-repo", "acme/pixel-lora")
        page.click("button:has-text('List files')")
        page.wait_for_selector("#m-files option[value='pixel.safetensors']", state="attached")
        page.fill("#m-file", "pixel.safetensors")
        page.click("#m-dl button[type=submit]")
        page.wait_for_selector("#m-tasks .task .meta:has-text(' of ')")
        wait_js(page, "document.querySelector('#m-tasks progress').value > 0")
        page.click("#m-tasks .task button:has-text('Cancel')")
        page.wait_for_selector("#m-tasks .task.cancelled")
        assert sorted(p.name for p in library.root.rglob("*") if p.is_file()) == before


# -- who, themes, layout ----------------------------------------------------------------------------------------------


def _add_user(data_dir: Path, name: str, role: str) -> None:
    import contextlib
    import sys

    old = sys.stdin
    sys.stdin = io.StringIO(PASSWORD + "\n")
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert cli(["users", "add", name, "--role", role, "--password-stdin", "--data-dir", str(data_dir)]) == 0
    finally:
        sys.stdin = old


def _login_form(
    serve: Callable[..., Served], open_page: Callable, monkeypatch: pytest.MonkeyPatch, data_dir: Path, auth: str,
    where: str = "/",
) -> tuple[Served, Any, Any]:  # fmt: skip
    """A server with users alice (user) and root (admin), and a page at `where` showing the login form."""
    # The UI's files are public (access.py lists them); the API behind them is not.
    monkeypatch.setattr(access, "PUBLIC", access.PUBLIC | {("GET", "/"), ("HEAD", "/")})
    monkeypatch.setattr(access, "PUBLIC_PREFIXES", (*access.PUBLIC_PREFIXES, ("GET", "/ui/"), ("HEAD", "/ui/")))
    _add_user(data_dir, "alice", "user")
    _add_user(data_dir, "root", "admin")
    served = serve(auth=auth)
    page, problems = open_page()
    # Before logging in, the API answers 401 (who am I, a refresh without a session, a wrong password).
    problems.allow(r"HTTP 401: (GET|POST) .*/api/v1/auth/(me|refresh|login)")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 401")
    page.goto(served.url + where)
    page.wait_for_selector("#login[open]")
    return served, page, problems


def test_login_roles_and_logout(
    serve: Callable[..., Served], open_page: Callable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served, page, problems = _login_form(serve, open_page, monkeypatch, tmp_path / "data", "jwt")
    page.fill("#login-user", "alice")
    page.fill("#login-pass", "wrong")
    page.click("#login-btn")
    page.wait_for_selector("#login-error:not([hidden])")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#gen-btn:not([disabled])")
    assert page.text_content("#who") == "alice (user)"
    page.fill("#f-prompt", "a cat")
    page.click("#gen-btn")
    page.wait_for_selector("#current .output img")
    # The 15-minute session cookie expires: the next call is refreshed with the refresh cookie, no login form.
    page.context.clear_cookies(name="sdrest_session")
    problems.allow(r"HTTP 401: GET .*/api/v1/jobs\?")
    page.click(".tabs a[data-tab=gallery]")
    page.wait_for_selector(".tile img")
    assert not page.is_visible("#login")
    page.click(".tabs a[data-tab=models]")
    page.wait_for_selector(".mrow")
    assert page.locator(".mrow button:has-text('Inspect')").count() > 0
    assert not page.is_visible(".mrow button:has-text('Load')")  # the admin's
    assert not page.is_visible("#m-dl")
    page.click(".tabs a[data-tab=system]")
    page.wait_for_selector("#s-health dd:has-text('ok')")
    assert not page.is_visible("#s-machine")  # /api/v1/system is the admin's: not even asked for
    page.click("#logout-btn")
    page.wait_for_selector("#login[open]")
    page.fill("#login-user", "root")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#who:has-text('root (admin)')")
    page.wait_for_selector("#s-machine .meter")  # the admin's view of the machine
    page.click(".tabs a[data-tab=models]")
    page.wait_for_selector(".mrow button:has-text('Load')")
    assert page.is_visible("#m-dl")


def test_the_admin_manages_keys_and_users_on_the_system_page(
    serve: Callable[..., Served], open_page: Callable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    served, page, problems = _login_form(serve, open_page, monkeypatch, tmp_path / "data", "api_key,jwt", "/#system")
    page.on("dialog", lambda dialog: dialog.accept(PASSWORD + "!" if dialog.type == "prompt" else None))
    page.fill("#login-user", "root")
    page.fill("#login-pass", PASSWORD)
    page.click("#login-btn")
    page.wait_for_selector("#a-users .mrow:has-text('alice')")
    assert "you" in page.text_content("#a-users .mrow:has-text('root')")
    assert page.locator("#a-users .mrow:has-text('root') button:has-text('Remove')").count() == 0  # not yourself
    # A key: made, shown once, working, revoked.
    page.fill("#a-key-name", "scanner")
    page.click("#a-key-form button[type=submit]")
    secret = page.wait_for_selector("#a-key-secret").text_content()
    assert secret.startswith("sdr_")
    page.wait_for_selector("#a-keys .mrow:has-text('scanner')")
    assert secret not in page.text_content("#a-keys")  # the list never shows the key
    assert httpx.get(served.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    page.click("#a-keys button[aria-label='Revoke key scanner']")
    page.wait_for_selector("#a-keys .mrow.bad:has-text('revoked')")
    assert httpx.get(served.url + "/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    # A user: added, refused a short password next to the field, promoted, disabled, given a password, removed.
    problems.allow(r"HTTP 422: POST .*/api/v1/users")
    problems.allow(r"console: Failed to load resource: the server responded with a status of 422")
    page.fill("#a-user-name", "carol")
    page.fill("#a-user-password", "short")
    page.click("#a-user-form button[type=submit]")
    assert "at least" in page.wait_for_selector("[data-field=password] .field-error").text_content()
    page.fill("#a-user-password", PASSWORD)
    page.click("#a-user-form button[type=submit]")
    page.wait_for_selector("#a-users .mrow:has-text('carol')")
    page.select_option("#a-role-carol", "admin")
    page.wait_for_selector(".toast.ok:has-text('carol is now admin')")
    page.locator("#a-users .mrow:has-text('carol')").locator("button:has-text('Disable')").click()
    page.wait_for_selector("#a-users .mrow.bad:has-text('carol')")
    page.locator("#a-users .mrow:has-text('carol')").locator("button:has-text('New password')").click()
    page.wait_for_selector(".toast.ok:has-text('New password for carol')")
    page.click("#a-users button[aria-label='Remove user carol']")
    page.wait_for_selector("#a-users .mrow:has-text('carol')", state="detached")
    shoot(page, "accounts")


def test_themes_follow_the_system_and_the_toggle_sticks(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(served.url, color_scheme="dark", permissions=["notifications"])
    assert page.get_attribute("#notify-btn", "aria-pressed") == "true"  # notifications allowed: a job end notifies
    background = "getComputedStyle(document.body).backgroundColor"
    dark = page.evaluate(background)
    assert page.get_attribute("html", "data-theme") is None
    page.click("#theme-btn")  # system → light
    assert page.get_attribute("html", "data-theme") == "light"
    light = page.evaluate(background)
    assert light != dark
    page.reload()
    page.wait_for_selector("#gen-btn:not([disabled])")
    assert page.get_attribute("html", "data-theme") == "light" and page.evaluate(background) == light
    page.click("#theme-btn")  # light → dark
    assert page.evaluate(background) == dark
    shoot(page, "generate-dark-1440")
    page.click("#theme-btn")  # dark → system (dark here)
    assert page.get_attribute("html", "data-theme") is None
    assert page.evaluate("localStorage.getItem('sdrest.theme')") is None


def test_no_layout_breaks_from_360_to_2560_px(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    served.post("generate", {"prompt": "a wide one", "width": 1024, "height": 256, "steps": 1, "model": "sdxs"})
    page, _ = open_page(served.url, width=360)
    for width in (360, 768, 1024, 2560):
        page.set_viewport_size({"width": width, "height": 900})
        for tab in ("generate", "gallery", "models", "system"):
            page.click(f".tabs a[data-tab={tab}]")
            page.wait_for_selector(f"#view-{tab}:not([hidden])")
            page.wait_for_timeout(50)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (width, tab, overflow)


def test_every_control_has_a_label_and_the_keyboard_reaches_generate(
    serve: Callable[..., Served], open_page: Callable
) -> None:
    served = serve()
    page, _ = open_page(served.url)
    for tab in ("generate", "gallery", "models", "system"):
        page.click(f".tabs a[data-tab={tab}]")
        page.wait_for_selector(f"#view-{tab}:not([hidden])")
        page.wait_for_timeout(100)
        for details in page.locator("details").all():
            details.evaluate("d => d.open = true")
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea, button, canvas')].filter(el => {
                if (el.closest('[hidden]') || el.type === 'hidden') return false;
                const name = (el.labels && el.labels.length) || el.getAttribute('aria-label')
                    || el.getAttribute('aria-labelledby') || (el.tagName === 'BUTTON' && el.textContent.trim());
                return !name;
            }).map(el => el.outerHTML.slice(0, 120))"""
        )
        assert unlabelled == [], (tab, unlabelled)
    page.click(".tabs a[data-tab=generate]")
    page.wait_for_selector("#view-generate:not([hidden])")  # the tab shows its view on hashchange, a moment later
    page.focus("#f-prompt")
    page.keyboard.type("typed with the keyboard")
    for _ in range(80):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "gen-btn":
            break
    else:
        raise AssertionError("Tab never reached the Generate button")
    page.keyboard.press("Enter")
    spec = wait_for_spec(served.engine, 1)
    assert spec.prompt == "typed with the keyboard"


def test_images_by_drop_and_paste(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(served.url)
    make_file = """async ([name, w, h]) => {
        const canvas = document.createElement('canvas');
        canvas.width = w; canvas.height = h;
        canvas.getContext('2d').fillRect(0, 0, w, h);
        const blob = await new Promise(resolve => canvas.toBlob(resolve, 'image/png'));
        const data = new DataTransfer();
        data.items.add(new File([blob], name, {type: 'image/png'}));
        window.__data = data;
    }"""
    page.evaluate(make_file, ["pasted.png", 300, 200])
    page.evaluate("document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: window.__data, bubbles: true}))")
    page.wait_for_selector("#slot-init.filled")
    assert page.is_checked("input[name=mode][value=img2img]")  # an image pasted in txt2img: image to image
    assert "300×200 · pasted.png" in page.text_content("#slot-init .meta")
    assert (page.input_value("#f-width"), page.input_value("#f-height")) == ("640", "448")  # its aspect, snapped
    page.check("input[name=mode][value=upscale]")
    page.evaluate(make_file, ["dropped.png", 64, 48])
    page.evaluate(
        "document.querySelector('#slot-init').dispatchEvent(new DragEvent('drop', {dataTransfer: window.__data, "
        "bubbles: true, cancelable: true}))"
    )
    page.wait_for_selector("#slot-init .meta:has-text('64×48 · dropped.png')")
    page.click("#gen-btn")
    spec = wait_for_spec(served.engine, 1)
    assert isinstance(spec, Upscale) and Image.open(spec.image).size == (64, 48)


def test_use_as_input_sends_the_output_by_reference(serve: Callable[..., Served], open_page: Callable) -> None:
    served = serve()
    page, _ = open_page(served.url)
    bodies: list[dict[str, Any]] = []

    def record(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/v1/generate"):
            bodies.append(request.post_data_json)

    page.on("request", record)
    page.fill("#f-prompt", "first")
    page.fill("#f-steps", "1")
    page.click("#gen-btn")
    page.click("#current .output button:has-text('Use as input')")
    assert page.is_checked("input[name=mode][value=img2img]")
    page.wait_for_selector("#slot-init.filled")
    page.fill("#f-prompt", "second")
    page.click("#gen-btn")
    spec = wait_for_spec(served.engine, 2)
    first = served.job(served.engine.ran[0])
    assert bodies[-1]["init_image"] == {"output": f"{first['id']}/{first['outputs'][0]['filename']}"}
    assert isinstance(spec, Img2Img) and Image.open(spec.init_image).size == (512, 512)
