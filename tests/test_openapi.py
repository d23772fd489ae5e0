"""The OpenAPI document: every route is in it, every documented request field is one its handler decodes, the error
shapes are the ones the code writes, and the document itself is valid OpenAPI 3.1 — and served, guarded, at
`/api/v1/openapi.json` with its reference page at `/api/v1/docs`."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.testclient import TestClient

from sdrest import cli, errors, openapi
from sdrest.access import required_role
from sdrest.app import create_app
from sdrest.routes.openai_errors import OpenAIError
from sdrest.settings import load_settings
from tests.fakes import FakeEngine
from tests.route_table import app_routes


def _app(data_dir: Path, auth: str = "none") -> Any:
    settings = load_settings({"data_dir": data_dir, "models_dir": data_dir / "models", "auth": auth}, env={})
    return create_app(settings, engine=FakeEngine())  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _app(tmp_path_factory.mktemp("openapi"), auth="api_key")


@pytest.fixture(scope="module")
def document(app: Any) -> dict[str, Any]:
    return openapi.build(app.routes, server="http://127.0.0.1:7860", auth="api_key")


def _template(path: str) -> str:
    return re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", path)


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _struct_bodies(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any], str]]:
    """(method, path, the resolved schema, media type) of every request body a struct decodes (JSON, or its fields as
    form parts)."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if openapi.OPERATIONS[(method.upper(), path)].request is None:
                continue
            for media, content in operation["requestBody"]["content"].items():
                yield method.upper(), path, _resolve(document, content["schema"]), media


def test_every_route_is_in_the_document(app: Any, document: dict[str, Any]) -> None:
    assert openapi.missing(app.routes) == [], "add these routes to sdrest.openapi.OPERATIONS"
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    routed = {(method, _template(path)) for method, path in app_routes(app.routes)}
    assert routed - documented == set()
    assert documented - routed == set()
    assert set(openapi.OPERATIONS) - routed == set(), "OPERATIONS describes routes the app does not have"


@pytest.mark.parametrize("auth", ["none", "api_key", "api_key,jwt,optional"])
def test_the_document_is_valid_openapi_3_1(app: Any, auth: str) -> None:
    validator = pytest.importorskip("openapi_spec_validator")  # a test extra
    document = openapi.build(app.routes, server="http://127.0.0.1:7860", auth=auth)
    validator.validate(document)  # raises on any violation of the OpenAPI 3.1 schema, unresolved $refs included
    assert document["openapi"] == "3.1.0"
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey", "basic", "cookie"}
    assert document["components"]["securitySchemes"]["apiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    assert ({} in document["security"]) == (auth != "api_key")  # anonymous requests pass with none and optional


def test_documented_request_fields_are_the_structs_fields(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, schema, media in _struct_bodies(document):
        struct = openapi.OPERATIONS[(method, path)].request
        assert struct is not None
        fields = msgspec.structs.fields(struct)
        assert set(schema["properties"]) == {f.encode_name for f in fields}, f"{method} {path} {media}"
        assert set(schema.get("required", [])) == {f.encode_name for f in fields if f.required}, f"{method} {path}"
        checked += 1
    assert checked >= 16


def test_copied_shapes_match_their_originals() -> None:
    """Answers the fuzzer cannot reach (they go to the network) are checked here instead."""
    from sdrest.library import downloads

    def shape(struct: Any) -> list[tuple[str, Any]]:
        return [(f.name, f.type) for f in msgspec.structs.fields(struct)]

    assert shape(openapi.RemoteFile) == shape(downloads.RemoteFile)


def _admin_key(data_dir: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert cli.main(["keys", "create", "docs", "--role", "admin", "--data-dir", str(data_dir)]) == 0
    return out.getvalue().strip()


def test_every_documented_field_is_decoded_by_the_handler(tmp_path: Path, document: dict[str, Any]) -> None:
    """Each documented field, sent with a value of no type it could have, is refused by the handler as that field
    (not as an unknown one): the struct the handler decodes has it. An undocumented field is refused as unknown."""
    key = _admin_key(tmp_path)
    with TestClient(_app(tmp_path, auth="api_key,jwt"), headers={"X-API-Key": key}) as client:
        for method, path, schema, media in _struct_bodies(document):
            if media != "application/json":
                continue
            url = re.sub(r"\{\w+\}", "x", path)
            for name in [*schema["properties"], "not_a_documented_field"]:
                response = client.request(method, url, json={name: [[[]]]})
                assert response.status_code == 422, f"{method} {path} {name}: {response.text}"
                error = response.json()["error"]
                assert error["field"].startswith(f"$.{name}"), f"{method} {path} {name}: {error}"
                unknown = "unknown field" in error["message"]
                assert unknown == (name == "not_a_documented_field"), f"{method} {path} {name}: {error}"


def _validator(document: dict[str, Any], name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")  # a test extra
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_the_error_shapes_are_the_ones_the_code_writes(document: dict[str, Any]) -> None:
    native = _validator(document, "ErrorResponse")
    for error in (
        errors.NotFound("no such job"),
        errors.Invalid("width: too wide", field="$.width"),
        errors.ApiError("it failed", details={"job": "x", "code": "engine_crashed"}),
    ):
        native.validate(error.body())
    assert not native.is_valid({"error": {"message": "no code"}})
    _validator(document, "OpenAIError").validate(OpenAIError(400, "bad size", param="size", code="x").body())
    _validator(document, "A1111Error").validate({"error": "HTTPException", "detail": "x", "body": "", "errors": "x"})
    for item in document["paths"].values():
        for operation in item.values():
            assert {"4XX", "5XX"} <= set(operation["responses"])


def test_roles_and_public_routes_follow_the_access_rules(document: dict[str, Any]) -> None:
    public = {
        (m.upper(), p) for p, item in document["paths"].items() for m, op in item.items() if op.get("security") == []
    }
    assert ("GET", "/api/v1/health") in public and ("POST", "/api/v1/auth/login") in public
    assert ("GET", "/v1/files/{job_id}/{filename}") in public
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if (method.upper(), path) not in public:
                assert operation["x-required-role"] == required_role(method.upper(), path)


def test_a_queued_job_links_to_its_get_cancel_delete_and_output(document: dict[str, Any]) -> None:
    ids = {op["operationId"]: (m, p) for p, item in document["paths"].items() for m, op in item.items()}
    assert len(ids) == sum(len(item) for item in document["paths"].values())  # operationIds are unique
    for status in ("202", "200"):  # queued, and finished (`?wait=true`)
        links = document["paths"]["/api/v1/generate"]["post"]["responses"][status]["links"]
        assert {name: ids[link["operationId"]] for name, link in links.items()} == {
            "GetJob": ("get", "/api/v1/jobs/{id}"),
            "CancelJob": ("post", "/api/v1/jobs/{id}/cancel"),
            "DeleteJob": ("delete", "/api/v1/jobs/{id}"),
            "GetOutput": ("get", "/api/v1/jobs/{id}/output/{filename}"),
        }
        assert all(link["parameters"]["id"] == "$response.body#/id" for link in links.values())
    job = _resolve(document, {"$ref": "#/components/schemas/Job"})
    assert "id" in job["required"] and "outputs" in job["properties"]


def test_served_guarded_and_readable(tmp_path: Path, document: dict[str, Any]) -> None:
    key = _admin_key(tmp_path)
    with TestClient(_app(tmp_path, auth="api_key"), base_url="http://sdrest.test") as client:
        assert client.get("/api/v1/openapi.json").status_code == 401
        assert client.get("/api/v1/docs").status_code == 401
        served = client.get("/api/v1/openapi.json", headers={"X-API-Key": key}).json()
        assert served["servers"] == [{"url": "http://sdrest.test", "description": "this server"}]
        assert {**served, "servers": None} == {**document, "servers": None}
        page = client.get("/api/v1/docs", headers={"X-API-Key": key})
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert 'fetch("openapi.json"' in page.text
        assert not re.search(r"<script src|(src|href)=\"(https?:)?//", page.text)  # nothing from elsewhere
