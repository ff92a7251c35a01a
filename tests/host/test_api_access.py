"""The extension's routes let in exactly whom the WebUI's own API lets in (issue: no route
without ``--api``; ``--api-auth`` users, each with their own password, and nobody else)."""

import base64
import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from modules import shared

from lib_fusion.engine.checkpoint_cache import CACHE

ROUTES = [("GET", "schema"), ("GET", "version"), ("GET", "models"), ("POST", "unload")]


def client(webui, api: bool = True, api_auth: str | None = None, nowebui: bool = False) -> TestClient:
    shared.cmd_opts.api_auth, shared.cmd_opts.nowebui = api_auth, nowebui
    return TestClient(webui.app(FastAPI(), api=api))


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_without_api_there_is_no_route(webui):
    http = client(webui, api=False)
    for method, path in ROUTES:
        assert http.request(method, f"/model-fusion/v1/{path}").status_code == 404


@pytest.mark.parametrize("flags", [{"api": True}, {"api": False, "nowebui": True}])
def test_with_the_api_and_no_auth_every_route_is_open(webui, flags):
    http = client(webui, **flags)
    for method, path in ROUTES:
        assert http.request(method, f"/model-fusion/v1/{path}").status_code == 200


def test_with_api_auth_each_user_gets_in_and_nobody_else(webui):
    http = client(webui, api_auth="alice:wonder,bob:b0b")
    for method, path in ROUTES:
        url = f"/model-fusion/v1/{path}"
        for headers in (basic("alice", "wonder"), basic("bob", "b0b")):
            assert http.request(method, url, headers=headers).status_code == 200
        for headers in ({}, basic("alice", "b0b"), basic("bob", "wonder"), basic("alice", "wrong"), basic("eve", ""), basic("", "")):
            answer = http.request(method, url, headers=headers)
            assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Basic"


def test_a_refused_unload_leaves_the_cache_alone(webui):
    webui.generate({"enabled": True, "model": "expert"}, steps=1)
    held = CACHE.key
    http = client(webui, api_auth="alice:wonder")
    assert http.post("/model-fusion/v1/unload", headers=basic("alice", "nope")).status_code == 401
    assert CACHE.key == held is not None
    assert http.get("/model-fusion/v1/unload", headers=basic("alice", "wonder")).status_code == 405  # POST only
    assert CACHE.key == held
    assert http.post("/model-fusion/v1/unload", headers=basic("alice", "wonder")).json() == {"unloaded": True}
    assert CACHE.key is None


def test_no_answer_carries_a_file_system_path(webui):
    (webui.models / "broken.safetensors").write_bytes(b"\x10\x00\x00junk")
    from modules import sd_models

    sd_models.list_models()
    webui.generate({"enabled": True, "model": "expert"}, steps=1)
    http = client(webui)
    for method, path in ROUTES:
        text = json.dumps(http.request(method, f"/model-fusion/v1/{path}").json())
        assert str(webui.models) not in text and str(webui.models.parent) not in text
