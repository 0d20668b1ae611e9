"""The proxy's OpenAPI description (serve/openapi.py): valid OpenAPI 3, served at
GET /_affinity/openapi.json, and it describes every route the app serves."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import httpx
import schemathesis
from starlette.applications import Starlette
from starlette.routing import Route

from rewriter import config
from rewriter.serve.app import create_app
from rewriter.serve.openapi import OPENAPI_PATH, spec


def _app(tmp_path: Path) -> Starlette:
    (tmp_path / "default.yaml").write_text("name: default\n")
    (tmp_path / "shop.yaml").write_text("name: shop\n")
    settings = replace(config.load({}), secret="unit-secret-0123456789", url="http://127.0.0.1:9")
    return create_app(settings, boost_dir=str(tmp_path))


def test_the_description_is_valid_openapi() -> None:
    schemathesis.openapi.from_dict(spec(["default"])).validate()


def test_a_broken_description_would_be_caught() -> None:
    """The validation above can fail: a response map that is not an object is refused."""
    broken = spec()
    broken["paths"]["/"]["get"]["responses"] = 5
    try:
        schemathesis.openapi.from_dict(broken).validate()
    except Exception as exc:
        assert "responses" in str(exc) or exc.__class__.__name__ == "ValidationError"
    else:
        raise AssertionError("an invalid description passed validation")


def test_every_route_the_app_serves_is_described(tmp_path: Path) -> None:
    app = _app(tmp_path)
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path != "/{path:path}"  # the refusal
        for method in route.methods or ()
    }
    described = {(path, method) for path, item in spec()["paths"].items() for method in item}
    assert served == described


def test_every_error_response_uses_the_error_shape() -> None:
    doc = spec()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for code, response in op["responses"].items():
                if int(code) >= 400 and "$ref" in response:
                    ref = response["$ref"].rsplit("/", 1)[1]
                    schema = doc["components"]["responses"][ref]["content"]["application/json"]
                    assert schema["schema"] == {"$ref": "#/components/schemas/Error"}, (
                        path,
                        method,
                    )


def test_it_is_served_and_names_the_loaded_boost_profiles(tmp_path: Path) -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app(tmp_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
            return await client.get(OPENAPI_PATH)

    r = asyncio.run(get())
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    search = doc["paths"]["/{index}/_search"]["post"]
    boost = next(p for p in search["parameters"] if p["name"] == "X-Boost-Profile")
    assert boost["schema"]["enum"] == ["default", "shop"]
    events = doc["paths"]["/events"]["post"]["requestBody"]["content"]
    assert set(events) == {"application/json", "application/x-ndjson"}
    assert "application/x-ndjson" in doc["paths"]["/_msearch"]["post"]["requestBody"]["content"]
