"""Schemathesis against a real uvicorn serving the app, from its own OpenAPI document, with authentication on.

Every operation gets positive and negative data; a state machine follows the document's links (a job from
`POST /api/v1/generate`, then GET, cancel and DELETE of that job). The checks: no 5xx, answers that conform to the
document (status, media type, schema), and no request that hangs. Bounded to stay quick: `SDREST_FUZZ_EXAMPLES=500`
(examples per operation) makes a long run.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdrest import cli, openapi
from sdrest.app import create_app
from sdrest.settings import load_settings
from tests.conftest import Library
from tests.fakes import FakeEngine
from tests.live_server import live_server

pytestmark = pytest.mark.slow  # a minute of browser or fuzzing: not in the fast lane

# Test extras (pyproject.toml); skipped, not broken, in an environment that lacks them.
hypothesis = pytest.importorskip("hypothesis")
schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = int(os.environ.get("SDREST_FUZZ_EXAMPLES", "25"))
STEPS = int(os.environ.get("SDREST_FUZZ_STEPS", "10"))  # requests per stateful scenario
TIMEOUT = 10.0  # seconds: a request that takes longer hangs, as far as these tests are concerned

# Left out of the fuzzing, each for a reason that is not a bug:
EXCLUDED = {
    # They go to the network (Hugging Face, or any URL): slow, flaky, and not this server's behaviour.
    ("POST", "/api/v1/models/download"),
    ("POST", "/api/v1/models/pull"),
    ("GET", "/api/v1/models/remote"),
    # Server-Sent Events: the answer streams until the job ends, so a per-request timeout cannot tell a hang from a
    # stream (tests/test_api.py covers it).
    ("GET", "/api/v1/jobs/{id}/events"),
}
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",  # what the document forbids is refused
    "ignored_auth",  # the same request without the key, or with a wrong one, is refused
    "use_after_free",  # a deleted job stays gone
    "ensure_resource_availability",  # a created job can be read
)


def _admin_key(data_dir: Path) -> str:
    """An admin API key, made as an administrator would: `sdrest keys create NAME --role admin`."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["keys", "create", "fuzzer", "--role", "admin", "--data-dir", str(data_dir)]) == 0
    return out.getvalue().strip()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL, admin key) of a live server: fake engine, a header-only library, small limits, auth by API key."""
    root = tmp_path_factory.mktemp("fuzz")
    library = Library(root / "models")
    # One generating model, so requests that name none are admitted; a LoRA and an upscaler for the other fields.
    library.add("sd1-sdxs", "checkpoints/sdxs.safetensors")
    library.add("lora-sd1-kohya-r4", "lora/pixel.safetensors")
    library.add("realesrgan-x4-1block", "esrgan/x4.safetensors")
    # DELETE /api/v1/models/{id} stays in: the library is this test's own folder of links to the cached fixtures, and
    # a deleted file moves to this test's trash, never touching the cache.
    data_dir = root / "data"
    key = _admin_key(data_dir)
    # Small limits keep each job cheap (the fake engine still encodes every image it makes).
    limits = {"max_side": 512, "max_pixels": 512 * 512, "max_batch": 2, "queue_size": 20}
    settings = load_settings({"models_dir": library.root, "data_dir": data_dir, "auth": "api_key", **limits}, env={})
    with live_server(create_app(settings, engine=FakeEngine())) as url:  # type: ignore[arg-type]
        yield url, key


def _document() -> dict[str, Any]:
    """The document, built from the app's route table as the server builds it (the tests check they are the same)."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings({"data_dir": tmp, "auth": "api_key"}, env={})
        return openapi.build(create_app(settings).routes, server="http://127.0.0.1", auth=settings.auth)


DOCUMENT = _document()
CONFIG = schemathesis.Config.from_dict({
    # The key is the test's, sent with every request; generated credentials would only be wrong ones.
    "generation": {"mode": "all", "max-examples": EXAMPLES, "database": "none", "with-security-parameters": False},
    "checks": {"enabled": False} | {name: {"enabled": True} for name in CHECKS},
    "phases": {"stateful": {"max-steps": STEPS}},
    "request-timeout": TIMEOUT,
})  # fmt: skip
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG).exclude(
    func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in EXCLUDED
)


def test_the_server_serves_this_document(server: tuple[str, str]) -> None:
    url, key = server
    served = httpx.get(f"{url}/api/v1/openapi.json", headers={"X-API-Key": key}).json()
    assert {**served, "servers": None} == {**DOCUMENT, "servers": None}
    assert served["servers"] == [{"url": url, "description": "this server"}]


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation(case: schemathesis.Case, server: tuple[str, str]) -> None:
    url, key = server
    case.call_and_validate(base_url=url, headers={"X-API-Key": key}, timeout=TIMEOUT)


# Fields of a generation that a valid value never gets refused for: the state machine keeps only these, so that its
# positive requests queue a job whose links it can follow (the other fields are the per-operation test's to fuzz).
ADMISSIBLE = {"prompt", "negative_prompt", "seed", "steps", "cfg_scale", "guidance", "sampling_method", "scheduler",
              "output_format"}  # fmt: skip


def test_job_lifecycle_by_links(server: tuple[str, str]) -> None:
    """Scenarios over the job operations that follow the document's links: queue a job, then get, cancel and delete
    it (and fetch its output), with `use_after_free` and `ensure_resource_availability` among the checks."""
    url, key = server
    seen: set[tuple[str, str, int]] = set()
    jobs = schema.include(path_regex=r"^/api/v1/(generate|jobs)")

    class Lifecycle(jobs.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            positive = case.meta is not None and case.meta.generation.mode.is_positive
            if case.operation.path == "/api/v1/generate" and positive and isinstance(case.body, dict):
                case.body = {name: value for name, value in case.body.items() if name in ADMISSIBLE}

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            return {"base_url": url, "headers": {"X-API-Key": key}, "timeout": TIMEOUT}

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case) -> None:
            seen.add((case.method.upper(), case.operation.path, response.status_code))
            super().after_call(response, case)

    # No shrinking: a scenario replayed against a live server that has moved on is not the same scenario.
    phases = [hypothesis.Phase.explicit, hypothesis.Phase.reuse, hypothesis.Phase.generate]
    Lifecycle.run(settings=hypothesis.settings(
        max_examples=max(10, EXAMPLES // 2), stateful_step_count=STEPS, deadline=None, database=None, phases=phases,
        suppress_health_check=list(hypothesis.HealthCheck),
    ))  # fmt: skip
    assert ("POST", "/api/v1/generate", 202) in seen
    assert ("GET", "/api/v1/jobs/{id}", 200) in seen  # a link's id found the job
    assert ("DELETE", "/api/v1/jobs/{id}", 204) in seen
    assert {status for method, path, status in seen if path == "/api/v1/jobs/{id}/cancel"} & {200, 409}
