"""Opt-in: against a running WebUI started with ``--api``.

    MODEL_FUSION_WEBUI_URL=http://127.0.0.1:7860 MODEL_FUSION_CHECKPOINT=<fusion ckpt> pytest tests/webui

Skipped when the variables are not set.
"""

import base64
import os

import pytest
import requests

URL = os.environ.get("MODEL_FUSION_WEBUI_URL")
CHECKPOINT = os.environ.get("MODEL_FUSION_CHECKPOINT")
pytestmark = pytest.mark.skipif(not (URL and CHECKPOINT), reason="set MODEL_FUSION_WEBUI_URL and MODEL_FUSION_CHECKPOINT")

BASE = {"prompt": "a lion with a crown", "negative_prompt": "", "steps": 6, "width": 64, "height": 64, "seed": 7, "sampler_name": "Euler"}


def txt2img(fusion=None):
    payload = dict(BASE)
    if fusion is not None:
        payload["alwayson_scripts"] = {"model fusion": {"args": [fusion]}}
    return requests.post(f"{URL}/sdapi/v1/txt2img", json=payload, timeout=600)


def test_fused_image_differs_and_infotext_names_the_fusion():
    plain = txt2img()
    fused = txt2img({"enabled": True, "model": CHECKPOINT, "fusion_selection": "600,1,1", "mode": 2})
    assert plain.status_code == fused.status_code == 200, fused.text
    assert base64.b64decode(plain.json()["images"][0]) != base64.b64decode(fused.json()["images"][0])
    assert "Fusion model:" in fused.json()["info"]


def test_disabled_is_identical_to_plain():
    plain = txt2img()
    disabled = txt2img({"enabled": False})
    assert plain.json()["images"] == disabled.json()["images"]


def test_bad_argument_is_an_error_response():
    response = txt2img({"enabled": True, "model": CHECKPOINT, "fusion_selection": "600,1"})
    assert response.status_code >= 400
    assert "fusion_selection" in response.text
