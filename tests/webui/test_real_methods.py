"""Opt-in: every method through a running WebUI's API, as a user sends it.

    MODEL_FUSION_WEBUI_URL=http://127.0.0.1:7860 MODEL_FUSION_CHECKPOINT=<fusion ckpt> \
    MODEL_FUSION_THIRD_CHECKPOINT=<another ckpt> pytest tests/webui

Each method fuses (the image differs from the plain one), reproduces, names what ran in the
infotext, and PNG Info reads its keys back; compare and preview return their extra images.
The tests that need a third checkpoint of the active family are skipped without
MODEL_FUSION_THIRD_CHECKPOINT. Each generation is 64x64 and a few steps: minutes on a CPU.
"""

import os

import pytest
import requests

from tests.webui.test_real_webui import CHECKPOINT, URL, generate, pixels, regions, snb

THIRD = os.environ.get("MODEL_FUSION_THIRD_CHECKPOINT")
pytestmark = pytest.mark.skipif(not (URL and CHECKPOINT), reason="set MODEL_FUSION_WEBUI_URL and MODEL_FUSION_CHECKPOINT")
needs_third = pytest.mark.skipif(not THIRD, reason="set MODEL_FUSION_THIRD_CHECKPOINT (a third checkpoint of the active family)")


@pytest.fixture
def budget_of_two():
    """Settings → Model Fusion keeps two checkpoints besides the active one (put back after)."""
    before = requests.get(f"{URL}/sdapi/v1/options", timeout=60).json().get("model_fusion_max_models", 1)
    requests.post(f"{URL}/sdapi/v1/options", json={"model_fusion_max_models": 2}, timeout=60).raise_for_status()
    yield
    requests.post(f"{URL}/sdapi/v1/options", json={"model_fusion_max_models": before}, timeout=60).raise_for_status()


@pytest.fixture(scope="module")
def plain():
    return pixels(generate())[0]


def infotext(response) -> str:
    import json

    return json.loads(response.json()["info"])["infotexts"][0]


def read_back(response) -> dict:
    """What the WebUI's PNG Info reads from the first image."""
    answer = requests.post(f"{URL}/sdapi/v1/png-info", json={"image": response.json()["images"][0]}, timeout=120)
    assert answer.status_code == 200, answer.text
    return answer.json().get("parameters") or {}


def fuses(plain, fusion, keys, **fields):
    response = generate(fusion, **fields)
    image = pixels(response)[0]
    assert abs(image - plain).max() > 0, "the fused image is the plain one"
    assert (pixels(generate(fusion, **fields))[0] == image).all(), "the same request gave another image"
    text = infotext(response)
    parameters = read_back(response)
    for key in keys:
        assert f"{key}:" in text, text
        assert key in parameters, (key, parameters)
    return response


@pytest.mark.parametrize(
    "fusion, keys",
    [
        (snb(fusion_selection="0,1,1"), ["Fusion", "Fusion model", "Fusion prompt"]),
        (snb(fusion_selection="0,1,1", text_encoder="own", mask="soft"), ["Fusion text encoder", "Fusion mask"]),
        ({"enabled": True, "model": CHECKPOINT, "method": "guidance", "guidance_weight": 2.0}, ["Fusion", "Fusion guidance weight"]),
        ({"enabled": True, "model": CHECKPOINT, "method": "base_uncond"}, ["Fusion", "Fusion model"]),
        (regions(), ["Fusion regions", "Fusion window"]),
        (regions(background="fusion", windows="shifted"), ["Fusion background", "Fusion windows"]),
    ],
    ids=["snb", "snb own soft", "guidance", "base uncond", "regions", "regions background shifted"],
)
def test_each_method_fuses_reproduces_and_reads_back(plain, fusion, keys):
    fuses(plain, fusion, keys)


def test_a_panorama_wraps_with_shifted_windows():
    fusion = regions(regions=[], windows="shifted", circular=True, window=8)
    wide = {"width": 128, "height": 64}
    response = generate(fusion, **wide)
    assert abs(pixels(response)[0] - pixels(generate(**wide))[0]).max() > 0
    assert "Fusion circular: True" in infotext(response)


def test_compare_and_preview_return_their_images():
    response = generate(snb(fusion_selection="0,1,1", compare=True, preview=True))
    images = response.json()["images"]
    assert len(images) >= 3, "the fused image, the comparison and the preview"


@needs_third
def test_snb_of_three_checkpoints_differs_from_two(plain, budget_of_two):
    models = [{"model": THIRD, "prompt": "a watercolour lion"}]
    three = fuses(plain, snb(fusion_selection="0,1,1", models=models), ["Fusion models"])
    two = pixels(generate(snb(fusion_selection="0,1,1")))[0]
    assert abs(pixels(three)[0] - two).max() > 0


@needs_third
def test_a_region_and_the_background_each_on_its_own_checkpoint(plain, budget_of_two):
    boxes = [{"box": [0.0, 0.0, 0.5, 1.0], "prompt": "a cartoon lion", "model": THIRD}]
    fuses(plain, regions(regions=boxes, background="fusion"), ["Fusion regions", "Fusion background"])
